"""Mass issuance: a card with its own key and certificate for every beneficiary who has none yet.

The cryptography (a key pair, a certificate, a signed printed code per card) runs in one process per core;
the main process allocates serials, writes the cards with a bulk upsert, and appends each card's
personalisation record (its private key and certificate) to the printer's output file — the only place the
private key ever exists. One transaction per chunk; a re-run skips holders who already have a live card.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session, sessionmaker

from labes.cards.crypto import card_certificate, load_authority, printed_code
from labes.cards.models import Card, CardEvent
from labes.cards.service import allocate_serials
from labes.db import session_scope, upsert
from labes.registry.models import Dependant, Member, Person
from labes.security import audit
from labes.security.audit import Actor

CHUNK = 2000


@dataclass(frozen=True)
class HolderRow:
    person_id: str  # 32 hex digits
    name: str
    social_id: str
    cin_last3: str
    governorate: str


@dataclass
class BulkResult:
    issued: int = 0
    seconds: float = 0.0


def holders_without_card(session: Session, *, after: str = "", limit: int = CHUNK) -> list[HolderRow]:
    """Return members and dependants without a live Labes card, in id order after `after` (keyset paging)."""
    live = exists().where(and_(Card.holder_person_id == Person.id, Card.card_type == "labes", Card.state != "blocked"))
    social = select(Member.social_id).where(Member.person_id == Person.id).scalar_subquery()
    via_dependant = (select(Member.social_id).join(Dependant, Dependant.member_id == Member.id)
                     .where(Dependant.person_id == Person.id).limit(1).scalar_subquery())
    query = (select(Person.id, Person.first_name_lat, Person.last_name_lat, Person.cin, Person.governorate,
                    func.coalesce(social, via_dependant).label("social_id"))
             .where(~live).order_by(Person.id).limit(limit))
    if after:
        query = query.where(Person.id > uuid.UUID(hex=after))
    rows = []
    for r in session.execute(query):
        if r.social_id is None:
            continue  # an Amen-only person: Amen cards are issued on their own
        rows.append(HolderRow(r.id.hex, f"{r.first_name_lat} {r.last_name_lat}", r.social_id, (r.cin or "000")[-3:],
                              r.governorate))
    return rows


_worker: dict[str, object] = {}


def _init(keys_dir: str) -> None:
    _worker["authority"] = load_authority(Path(keys_dir))


def personalise(chunk: list[tuple[str, HolderRow]], now: datetime) -> list[tuple[dict, dict]]:
    """Do the cryptography for a chunk of (serial, holder): return (card row, personalisation record) pairs."""
    authority = _worker["authority"]
    out = []
    for serial, holder in chunk:
        key = ec.generate_private_key(ec.SECP256R1())
        public = key.public_key()
        certificate = card_certificate(authority, public_key=public, serial=serial, card_type="labes",
                                       holder_name=holder.name, now=now)
        row = {
            "id": uuid.uuid4().hex, "serial": serial, "card_type": "labes", "holder_person_id": holder.person_id,
            "holder_professional_id": None, "holder_name": holder.name, "governorate": holder.governorate,
            "state": "printed", "issued_at": now.isoformat(sep=" "), "printed_on": now.date().isoformat(),
            "public_key": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
            "certificate": certificate.public_bytes(serialization.Encoding.DER),
            "printed_code": printed_code(authority, serial=serial, holder_name=holder.name, social_id=holder.social_id,
                                         cin_last3=holder.cin_last3),
        }
        record = {"serial": serial, "holder_name": holder.name,
                  "private_key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()).decode(),
                  "certificate": certificate.public_bytes(serialization.Encoding.PEM).decode()}
        out.append((row, record))
    return out


def _chunks(factory: sessionmaker[Session], limit: int | None) -> Iterator[list[HolderRow]]:
    after, remaining = "", limit
    while remaining is None or remaining > 0:
        size = CHUNK if remaining is None else min(CHUNK, remaining)
        with factory() as session:
            rows = holders_without_card(session, after=after, limit=size)
        if not rows:
            return
        yield rows
        after = rows[-1].person_id
        if remaining is not None:
            remaining -= len(rows)


def issue_all(factory: sessionmaker[Session], *, actor: Actor, keys_dir: Path, output: Path,
              workers: int | None = None, limit: int | None = None) -> BulkResult:
    """Issue a Labes card to every member and dependant without one; private keys go only to `output`."""
    import time

    started = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    now = datetime.now(UTC)
    result = BulkResult()
    output.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    context = multiprocessing.get_context("spawn")
    with os.fdopen(fd, "a", encoding="utf-8") as personalisation, \
            ProcessPoolExecutor(workers, mp_context=context, initializer=_init, initargs=(str(keys_dir),)) as pool:
        # A pipeline: while the workers do the cryptography of the next chunk, this process writes the last one.
        pending: deque[tuple[list[str], list]] = deque()

        def write_oldest() -> None:
            serials, futures = pending.popleft()
            made = [item for future in futures for item in future.result()]
            with session_scope(factory) as session:
                upsert(session, Card, [row for row, _ in made])
                upsert(session, CardEvent, [{"card_id": row["id"], "at": now.isoformat(sep=" "), "event": "issue",
                                             "from_state": None, "to_state": "printed", "actor": actor.label}
                                            for row, _ in made])
                audit.record(session, actor=actor, action="card:status:issue_bulk", entity_type="card_batch_issue",
                             entity_id=f"{serials[0]}..{serials[-1]}", after={"cards": len(made)})
            personalisation.writelines(json.dumps(record) + "\n" for _, record in made)
            personalisation.flush()
            result.issued += len(made)

        for holders in _chunks(factory, limit):
            with session_scope(factory) as session:
                serials = allocate_serials(session, card_type="labes", count=len(holders))
            pairs = list(zip(serials, holders, strict=True))
            slices = [pairs[i::workers] for i in range(workers)]
            pending.append((serials, [pool.submit(personalise, part, now) for part in slices if part]))
            if len(pending) > 1:
                write_oldest()
        while pending:
            write_oldest()
    result.seconds = time.perf_counter() - started
    return result
