"""The append-only, hash-chained audit trail.

Services call `record()` during a unit of work; the events are written just before the transaction
commits, under a lock, each with `seq` = previous + 1 and `hash` = SHA-256(previous hash + this event).
A changed, removed or inserted row breaks the chain, and `verify()` names the first one.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import event, insert, inspect, select, text
from sqlalchemy.orm import Session

from labes.security.models import AuditEvent

GENESIS = "0" * 64
_PENDING = "labes_audit_pending"


@dataclass(frozen=True)
class Actor:
    """Who acts: an agent, another system through an API token, or the command line."""

    kind: str  # agent, token, cli, system
    name: str
    roles: tuple[str, ...] = ()
    permissions: frozenset[str] = frozenset()
    agent_id: int | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.name}"


SYSTEM = Actor("system", "labes")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return _timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    return value


def snapshot(obj: Any, *, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """Return the column values of an ORM object as JSON-ready data (for before/after)."""
    return {
        attr.key: _jsonable(getattr(obj, attr.key))
        for attr in inspect(obj).mapper.column_attrs
        if attr.key not in exclude
    }


def _timestamp(value: datetime) -> str:
    if value.tzinfo is None:  # SQLite returns naive datetimes; Labes stores UTC.
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(*, seq: int, at: datetime, actor: str, action: str, entity_type: str, entity_id: str,
               before: Any, after: Any, request_id: str | None, prev_hash: str) -> str:
    """Return the chained SHA-256 of one event."""
    payload = json.dumps(
        {
            "seq": seq, "at": _timestamp(at), "actor": actor, "action": action, "entity_type": entity_type,
            "entity_id": entity_id, "before": before, "after": after, "request_id": request_id,
            "prev_hash": prev_hash,
        },
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def record(session: Session, *, actor: Actor, action: str, entity_type: str, entity_id: Any,
           before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> None:
    """Queue an audit event (tag like `registry:member:create`) for this unit of work."""
    session.info.setdefault(_PENDING, []).append(
        {
            "actor": actor.label, "action": action, "entity_type": entity_type, "entity_id": str(entity_id),
            "before": before, "after": after, "request_id": session.info.get("request_id"),
        }
    )


def _lock_chain(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7361726)"))
    # SQLite: the flush above already holds the database's single write lock.


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    pending = session.info.pop(_PENDING, None)
    if not pending:
        return
    session.flush()
    _lock_chain(session)
    last = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    seq, prev = (last.seq, last.hash) if last else (0, GENESIS)
    now = datetime.now(UTC)
    rows = []
    for item in pending:
        seq += 1
        digest = event_hash(seq=seq, at=now, prev_hash=prev, **item)
        rows.append({"seq": seq, "at": now, "prev_hash": prev, "hash": digest, **item})
        prev = digest
    # A Core insert: every write of the system passes here, and ORM objects would only be thrown away.
    session.execute(insert(AuditEvent), rows)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def events(session: Session, *, entity_type: str | None = None, entity_id: str | None = None,
           before_seq: int | None = None, limit: int = 100) -> list[AuditEvent]:
    """Return audit events, newest first, optionally for one entity and before a sequence number."""
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(limit)
    if entity_type:
        query = query.where(AuditEvent.entity_type == entity_type)
    if entity_id:
        query = query.where(AuditEvent.entity_id == entity_id)
    if before_seq:
        query = query.where(AuditEvent.seq < before_seq)
    return list(session.scalars(query))


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None


def _rows(session: Session, batch: int = 5000) -> Iterator[AuditEvent]:
    after = 0
    while True:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(batch)).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq
        session.expunge_all()


def verify(session: Session) -> VerifyResult:
    """Walk the chain from the start; return the first tampered, missing or re-hashed row."""
    prev_hash, expected, checked = GENESIS, 1, 0
    for row in _rows(session):
        if row.seq != expected:
            return VerifyResult(False, checked, prev_hash, expected,
                                f"row {expected} is missing (the next row present is {row.seq})")
        recomputed = event_hash(seq=row.seq, at=row.at, actor=row.actor, action=row.action,
                                entity_type=row.entity_type, entity_id=row.entity_id, before=row.before,
                                after=row.after, request_id=row.request_id, prev_hash=row.prev_hash)
        if row.prev_hash != prev_hash:
            if row.seq == 1:
                return VerifyResult(False, checked, prev_hash, 1, "row 1 was altered (it does not start the chain)")
            # The previous row passed its own check, so it was rewritten together with its hash.
            return VerifyResult(False, checked, prev_hash, row.seq - 1,
                                f"row {row.seq - 1} was rewritten (its hash was recomputed; row {row.seq} no longer links to it)")
        if recomputed != row.hash:
            return VerifyResult(False, checked, prev_hash, row.seq, f"row {row.seq} was altered (its content does not match its hash)")
        prev_hash, expected, checked = row.hash, expected + 1, checked + 1
    return VerifyResult(True, checked, prev_hash)
