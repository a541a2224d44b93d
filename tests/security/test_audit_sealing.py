"""Sealing the audit trail: events are written with their transaction, then chained by one sealer at a time."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import JSON, bindparam, func, select, text

from labes.app import create_app
from labes.cli import app as cli
from labes.config import Settings
from labes.security import audit
from labes.security.audit import record, seal, seal_all, verify
from labes.security.models import AuditEvent
from tests import factories


def write(session, count: int = 1) -> str:
    """Commit `count` events about one new entity; return its id."""
    key = uuid.uuid4().hex
    for n in range(count):
        record(session, actor=factories.ACTOR, action="tests:event:write", entity_type="test", entity_id=key, after={"n": n})
    session.commit()
    return key


def write_uncommitted(session) -> str:
    """Write an event as a commit does, and stop before COMMIT: the transaction holds it, uncommitted."""
    key = uuid.uuid4().hex
    record(session, actor=factories.ACTOR, action="tests:event:write", entity_type="test", entity_id=key)
    audit._write_pending(session)
    return key


def events_of(session, *keys: str) -> list[AuditEvent]:
    session.expire_all()
    return list(session.scalars(select(AuditEvent).where(AuditEvent.entity_id.in_(keys)).order_by(AuditEvent.id)))


def max_seq(session) -> int | None:
    return session.scalar(select(func.max(AuditEvent.seq)))


def needs_postgresql(session) -> None:
    if session.get_bind().dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: transactions never overlap")


def assert_chained(events: list[AuditEvent]) -> None:
    assert [e.seq for e in events] == list(range(events[0].seq, events[0].seq + len(events)))
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]


class TestWriting:
    def test_a_write_commits_without_touching_the_chain(self, session):
        seal_all(session)
        head = max_seq(session)

        (event,) = events_of(session, write(session))

        assert (event.seq, event.prev_hash, event.hash) == (None, None, None)
        assert event.actor == factories.ACTOR.label
        assert max_seq(session) == head

    def test_events_are_numbered_in_the_order_written(self, session):
        first, second = write(session, 2), write(session)

        events = events_of(session, first, second)

        assert [e.entity_id for e in events] == [first, first, second]
        assert [e.after["n"] for e in events] == [0, 1, 0]


class TestSeal:
    def test_chains_in_the_order_written_after_the_head(self, session):
        seal_all(session)
        head = max_seq(session) or 0
        keys = write(session, 3), write(session, 2)

        assert seal(session) == 5

        events = events_of(session, *keys)
        assert events[0].seq == head + 1
        assert_chained(events)

    def test_is_idempotent(self, session):
        write(session, 2)
        seal_all(session)

        assert seal(session) == 0
        assert seal_all(session) == 0

    def test_seals_at_most_limit_and_seal_all_takes_the_rest(self, session):
        seal_all(session)
        key = write(session, 5)

        assert seal(session, limit=2) == 2
        assert seal_all(session, batch=2) == 3

        assert_chained(events_of(session, key))

    def test_the_hash_is_what_verify_recomputes(self, session):
        write(session, 2)
        seal_all(session)

        result = verify(session)

        assert result.ok, result.problem
        assert (result.checked, result.pending) == (max_seq(session), 0)


class TestVerify:
    def test_reports_pending_events_and_checks_the_sealed_chain(self, session):
        write(session, 2)
        seal_all(session)
        write(session, 3)

        result = verify(session)

        assert result.ok, result.problem
        assert (result.checked, result.pending) == (max_seq(session), 3)

    def test_does_not_seal(self, session):
        write(session)

        verify(session)

        assert verify(session).pending == 1

    def test_an_altered_sealed_row_is_named_while_others_wait(self, engine, committed):
        with committed() as session:
            key = write(session, 3)
            seal_all(session)
            session.commit()
            write(session)
            seq = events_of(session, key)[1].seq
        statement = text('UPDATE audit_event SET "after" = :after WHERE seq = :seq').bindparams(bindparam("after", type_=JSON))
        with engine.begin() as connection:
            connection.execute(statement, {"after": {"n": 9}, "seq": seq})

        with committed() as session:
            result = verify(session)

        assert (result.ok, result.first_bad_seq, result.pending) == (False, seq, 1)
        assert "altered" in result.problem

    def test_a_deleted_sealed_row_is_named_missing(self, engine, committed):
        with committed() as session:
            key = write(session, 3)
            seal_all(session)
            session.commit()
            seq = events_of(session, key)[1].seq
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM audit_event WHERE seq = :seq"), {"seq": seq})

        with committed() as session:
            result = verify(session)

        assert (result.ok, result.first_bad_seq) == (False, seq)
        assert "missing" in result.problem


class TestConcurrency:
    """Real commits, each transaction on its own connection."""

    def test_writers_do_not_wait_for_each_other(self, committed):
        with committed() as first, committed() as second, committed() as reader:
            needs_postgresql(first)
            first_key = write_uncommitted(first)
            second.execute(text("SET LOCAL lock_timeout = '2s'"))  # waiting for `first` would fail, not hang

            second_key = write_uncommitted(second)  # both transactions now hold uncommitted events

            assert events_of(reader, first_key, second_key) == []
            second.commit()
            first.commit()
            seal_all(reader)
            reader.commit()
            events = events_of(reader, first_key, second_key)
            assert [e.entity_id for e in events] == [first_key, second_key]
            assert_chained(events)
            assert verify(reader).ok

    def test_an_event_committed_late_with_a_lower_id_is_sealed_in_a_later_round(self, committed):
        with committed() as late, committed() as early, committed() as sealer:
            needs_postgresql(late)
            seal_all(sealer)
            sealer.commit()
            late_key = write_uncommitted(late)  # the lower id, committed last
            early_key = write(early)

            assert seal(sealer) == 1
            sealer.commit()
            late.commit()
            assert seal(sealer) == 1
            sealer.commit()

            late_event, early_event = events_of(sealer, late_key, early_key)
            assert late_event.id < early_event.id
            assert (late_event.seq, late_event.prev_hash) == (early_event.seq + 1, early_event.hash)
            assert verify(sealer).ok

    def test_a_second_sealer_returns_at_once_while_one_holds_the_chain(self, committed):
        with committed() as holder, committed() as other:
            needs_postgresql(holder)
            write(holder, 2)
            seal_all(holder)
            holder.commit()
            write(holder, 2)

            assert seal(holder) == 2  # holds the chain until it commits
            assert seal(other) == 0
            other.commit()
            holder.commit()
            assert seal(other) == 0

    def test_sealers_and_writers_at_once_leave_one_unbroken_chain(self, committed):
        writers, sealers, rounds = 3, 2, 15
        start = threading.Barrier(writers + sealers)
        writing = threading.Event()
        errors: list[BaseException] = []

        def run(work) -> None:
            try:
                start.wait()
                work()
            except BaseException as error:  # reported by the main thread
                errors.append(error)

        def write_rounds() -> None:
            for _ in range(rounds):
                with committed() as session:
                    write(session, 2)

        def seal_rounds() -> None:
            while not writing.is_set():
                with committed() as session:
                    seal_all(session, batch=3)
                    session.commit()
                time.sleep(0.001)  # let SQLite's writers take the lock between rounds

        threads = [threading.Thread(target=run, args=(write_rounds,)) for _ in range(writers)]
        sealing = [threading.Thread(target=run, args=(seal_rounds,)) for _ in range(sealers)]
        for thread in threads + sealing:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        writing.set()
        for thread in sealing:
            thread.join(timeout=60)
        with committed() as session:
            seal_all(session)
            session.commit()
            result = verify(session)
            seqs = session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all()

        assert errors == []
        assert result.ok, result.problem
        assert (result.checked, result.pending) == (writers * rounds * 2, 0)
        assert seqs == list(range(1, writers * rounds * 2 + 1))


# ---------------------------------------------------------------- who seals


@pytest.fixture
def app_sealing(committed, keys_dir):
    """The API over real commits, sealing every `interval` seconds."""

    def build(interval: float):
        settings = Settings(database_url="sqlite://", environment="test", log_level="WARNING", keys_dir=keys_dir,
                            audit_seal_interval=interval)
        return create_app(settings, committed)

    return build


def pending(committed) -> int:
    with committed() as session:
        return verify(session).pending


def wait_until_sealed(committed) -> None:
    deadline = time.monotonic() + 10
    while pending(committed) and time.monotonic() < deadline:
        time.sleep(0.02)


class TestAppSealer:
    def test_seals_while_the_app_runs(self, app_sealing, committed):
        with TestClient(app_sealing(0.02)):
            with committed() as session:
                write(session, 2)

            wait_until_sealed(committed)

            assert pending(committed) == 0

    def test_seals_once_more_at_shutdown(self, app_sealing, committed):
        with TestClient(app_sealing(3600)):
            with committed() as session:
                write(session, 2)

        assert pending(committed) == 0

    def test_survives_a_failed_round(self, app_sealing, committed, monkeypatch):
        failed: list[str] = []
        calls = iter([RuntimeError("connection reset")])

        def flaky(session):
            error = next(calls, None)
            if error:
                raise error
            return seal_all(session)

        monkeypatch.setattr(audit, "seal_all", flaky)
        monkeypatch.setattr(audit.log, "exception", failed.append)
        with TestClient(app_sealing(0.02)):
            with committed() as session:
                write(session)

            wait_until_sealed(committed)

            assert pending(committed) == 0
        assert failed == ["audit events could not be sealed"]

    def test_no_sealer_when_the_interval_is_0(self, app_sealing, committed):
        with TestClient(app_sealing(0)):
            with committed() as session:
                write(session)

        assert pending(committed) == 1


class TestCommands:
    def test_seal_prints_how_many(self, cli_runner, committed):
        with committed() as session:
            write(session, 3)

        first = cli_runner.invoke(cli, ["audit", "seal"])
        again = cli_runner.invoke(cli, ["audit", "seal"])

        assert first.exit_code == 0, first.output
        assert (first.stdout, again.stdout) == ("sealed 3 events\n", "sealed 0 events\n")

    def test_verify_seals_first(self, cli_runner, committed):
        with committed() as session:
            write(session, 2)

        result = cli_runner.invoke(cli, ["audit", "verify"])

        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("sealed 2 events\naudit trail intact: 2 events, head ")
        assert pending(committed) == 0


@pytest.mark.parametrize("moment", [
    datetime(2026, 12, 4, 8, 46, 48, 123456, tzinfo=UTC),
    datetime(2026, 12, 4, 8, 46, 48, tzinfo=UTC),  # no microseconds: still six digits
    datetime(2026, 12, 4, 0, 30, 0, 5, tzinfo=ZoneInfo("Africa/Tunis")),  # 23:30 UTC the day before
    datetime(2026, 12, 4, 8, 46, 48, 7),  # naive, as SQLite hands it back: UTC
])
def test_timestamps_are_spelled_as_the_chains_already_sealed_spell_them(moment):
    """Sealed hashes cover the event's time as spelled when they were sealed: the spelling may never change."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    assert audit._timestamp(moment) == aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
