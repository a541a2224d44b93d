"""The test harness's promise: what a test commits inside the outer transaction is rolled back."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import String, exc, func, select
from sqlalchemy.orm import sessionmaker

from labes import db
from labes.db import make_engine

from labes.security.models import Agent
from tests import factories


def test_commits_inside_the_outer_transaction_are_rolled_back(engine):
    connection = engine.connect()
    outer = connection.begin()
    factory = sessionmaker(bind=connection, join_transaction_mode="create_savepoint")
    with factory() as session:
        factories.agent_token(session, "reviewer")
        session.commit()
        assert session.scalar(select(func.count()).select_from(Agent)) >= 1
    outer.rollback()
    connection.close()
    with sessionmaker(bind=engine)() as session:
        assert session.scalar(select(func.count()).select_from(Agent)) == 0


def _backend_pid(engine) -> int:
    with engine.connect() as connection:
        return connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()


def test_an_idle_pooled_connection_the_server_dropped_is_replaced_at_checkout(db_url, monkeypatch):
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has no server that can drop a connection")
    engine = make_engine(db_url, pool_size=1, max_overflow=0)
    try:
        dropped = _backend_pid(engine)
        with make_engine(db_url).connect() as other:  # the server ends that session (a restart, a failover)
            assert other.exec_driver_sql(f"SELECT pg_terminate_backend({dropped})").scalar()
        monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)  # the pooled connection counts as idle
        replaced = _backend_pid(engine)
        assert replaced != dropped
    finally:
        engine.dispose()


def test_a_connection_used_a_moment_ago_is_not_pinged(db_url, monkeypatch):
    if not db_url.startswith("postgresql"):
        pytest.skip("pinging concerns a server's connections")
    engine = make_engine(db_url, pool_size=1, max_overflow=0)
    pings = []
    monkeypatch.setattr(engine.dialect, "do_ping", lambda connection: pings.append(connection) or True)
    try:
        for _ in range(3):
            _backend_pid(engine)
        assert pings == []
        monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
        _backend_pid(engine)
        assert len(pings) == 1
    finally:
        engine.dispose()


def test_a_union_read_gives_each_part_its_own_columns_with_their_types(session):

    from labes.registry.models import ChronicCondition, Member, Person

    member = factories.member(session)
    person = session.get(Person, member.person_id)
    session.add(ChronicCondition(id=uuid.uuid4(), person_id=person.id, code="08", icd10="E11", valid_from=date(2025, 3, 1)))
    session.flush()
    read = db.union_read(
        person=select(Person.id, Person.birth_date).where(Person.id == person.id),
        member=select(Member.id, Member.social_id, Member.affiliation_start).where(Member.person_id == person.id),
        chronic=select(ChronicCondition.code, ChronicCondition.valid_from).where(ChronicCondition.person_id == person.id))
    found = read.namespaces(read.rows(session.connection(), {}))
    # Typed as the columns are, on every backend (SQLite stores UUIDs and dates as text).
    assert [vars(row) for row in found["person"]] == [{"id": person.id, "birth_date": person.birth_date}]
    assert [vars(row) for row in found["member"]] == [{"id": member.id, "social_id": member.social_id,
                                                       "affiliation_start": member.affiliation_start}]
    assert [vars(row) for row in found["chronic"]] == [{"code": "08", "valid_from": date(2025, 3, 1)}]


def test_a_union_read_refuses_a_part_with_its_own_limit():
    from labes.registry.models import Person

    with pytest.raises(ValueError, match="LIMIT or ORDER BY"):
        db.union_read(one=select(Person.id).limit(1), other=select(Person.cin))


def test_a_read_returns_the_rows_sqlalchemy_returns(session):
    # On PostgreSQL `read` hands the statement to psycopg itself; the rows must be the same, value for value.
    from labes.care.patients import _FILE
    from labes.registry.models import Dependant

    member = factories.member(session)
    child = factories.dependant(session, member.social_id)
    session.flush()
    dialect = session.get_bind().dialect
    statement = _FILE[dialect.name].statement
    for person_id in (member.person_id, child.person_id):
        parameters = {"person_id": person_id, "on": date.today(), "year": date.today().year}
        expected = [tuple(row) for row in session.execute(statement, parameters)]
        assert [tuple(row) for row in db.read(session.connection(), statement, parameters)] == expected
        assert len(expected) == 2  # the head and the one dependant
    assert session.get(Dependant, child.id) is not None
    if dialect.name == "postgresql":  # and it did go straight to psycopg
        assert db._driver_ready(statement, dialect) is not None


def test_the_driver_gets_the_sql_sqlalchemy_compiles_with_the_parameters_numbered():
    # The statements of the point of care, and one that uses a parameter twice: the SQL handed to psycopg is
    # SQLAlchemy's, character for character, but for the placeholders; each name keeps one number.
    import re

    from sqlalchemy import bindparam
    from sqlalchemy.dialects import postgresql

    from labes.care.patients import _FILE
    from labes.care.transactions import _CARDS_AND_FILE
    from labes.registry.models import Person

    dialect = postgresql.psycopg.dialect()
    twice = select(Person.id).where(Person.cin == bindparam("cin"), Person.phone != bindparam("cin"),
                                    Person.last_name_lat == bindparam("name"))
    for statement in (_FILE["postgresql"].statement, _CARDS_AND_FILE["postgresql"].statement, twice):
        prepared = db._driver_ready(statement, dialect)
        named = str(statement.compile(dialect=dialect))
        number = {name: index for index, name in enumerate(prepared.order, start=1)}
        assert prepared.sql == re.sub(r"%\((\w+)\)s", lambda m: f"${number[m[1]]}", named)
        assert sorted(prepared.order) == sorted(set(re.findall(r"%\((\w+)\)s", named)))
    assert prepared.sql.count("$1") == 2 and prepared.parameters({"cin": "01234567", "name": "X"}) == ["01234567", "X"]


def test_a_read_whose_columns_need_converting_goes_through_sqlalchemy(session):
    from labes.security.models import AuditEvent

    statement = select(AuditEvent.after).where(AuditEvent.action == "test:read")
    session.add(AuditEvent(at=datetime.now(UTC), actor="cli:test", action="test:read", entity_type="x", entity_id="1",
                           after={"covered": True}))
    session.flush()
    assert [row[0] for row in db.read(session.connection(), statement, {})] == [{"covered": True}]


def test_a_read_on_a_connection_the_server_dropped_invalidates_it(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has no server that can drop a connection")
    from labes.registry.models import Person

    engine, other = make_engine(db_url, pool_size=1, max_overflow=0), make_engine(db_url)
    statement = select(Person.id).where(Person.cin == "00000000")
    try:
        with engine.connect() as connection:
            with other.connect() as killer:
                pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
                killer.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
            with pytest.raises(exc.OperationalError):  # as SQLAlchemy raises it
                db.read(connection, statement, {})
            assert connection.invalidated
        with engine.connect() as connection:  # the pool hands out a new connection
            assert db.read(connection, statement, {}) == []
    finally:
        engine.dispose()
        other.dispose()


def test_an_awaited_read_on_a_connection_the_server_dropped_invalidates_it(db_url):
    """The same through the reading requests' asynchronous engine: SQLAlchemy's error, and a new connection next."""
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has no server that can drop a connection")
    import asyncio

    from labes.registry.models import Person

    engine, other = make_engine(db_url), make_engine(db_url)
    reading = db.make_reading_engine(engine, pool_size=1)
    statement = select(Person.id).where(Person.cin == "00000000")

    def terminate(pid: int) -> None:
        with other.connect() as killer:
            killer.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")

    async def scenario() -> None:
        try:
            async with reading.connect() as connection:
                pid = (await connection.exec_driver_sql("SELECT pg_backend_pid()")).scalar()
                await asyncio.to_thread(terminate, pid)
                # asyncpg says "connection is closed" (InterfaceError), or, if it has not yet seen the socket
                # close, that its protocol is busy (InternalError): SQLAlchemy's errors either way, the
                # connection invalidated.
                with pytest.raises((exc.InterfaceError, exc.InternalError)) as raised:
                    await connection.run_sync(lambda sync: db.read(sync, statement, {}))
                assert raised.value.connection_invalidated
                assert connection.sync_connection.invalidated
            async with reading.connect() as connection:  # the pool hands out a new connection
                assert await connection.run_sync(lambda sync: db.read(sync, statement, {})) == []
        finally:
            await reading.dispose()

    try:
        asyncio.run(scenario())
    finally:
        engine.dispose()
        other.dispose()


def _reading_sessions(db_url, scenario, *, size: int = 1) -> None:
    """Run `scenario(sessions, pid_of, terminate)` against kept reading sessions of the database at `db_url`."""
    import asyncio

    from sqlalchemy.util import greenlet_spawn

    engine, other = make_engine(db_url), make_engine(db_url)
    reading = db.make_reading_engine(engine, pool_size=size)
    sessions = db.ReadingSessions(sessionmaker(bind=reading.sync_engine), size=size)

    async def pid_of(session) -> int:
        return await greenlet_spawn(lambda: session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar())

    async def terminate(pid: int) -> None:
        def run() -> None:
            with other.connect() as killer:
                killer.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
        await asyncio.to_thread(run)

    async def run() -> None:
        try:
            await scenario(sessions, pid_of, terminate)
        finally:
            await sessions.close()
            await reading.dispose()

    try:
        asyncio.run(run())
    finally:
        engine.dispose()
        other.dispose()


def _postgresql_only(db_url) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("reading sessions are the asynchronous engine's, which is PostgreSQL's")


def test_a_kept_reading_session_is_handed_to_the_next_request_emptied(db_url):
    """The next request gets the same session and connection, with none of the last request's objects or notes."""
    _postgresql_only(db_url)
    from sqlalchemy.util import greenlet_spawn

    from labes.registry.models import Person

    async def scenario(sessions, pid_of, _terminate) -> None:
        async with sessions.session() as first:
            pid = await pid_of(first)
            first.info["request_id"] = "abc"
            first.add(Person(cin="00000001", first_name_ar="أ", last_name_ar="ب", first_name_lat="A", last_name_lat="B",
                             birth_date=date(1990, 1, 1), sex="F"))  # never flushed: the engine's statements commit alone
        async with sessions.session() as second:
            assert second is first and await pid_of(second) == pid
            assert second.info == {} and list(second) == [] and not second.new
            assert await greenlet_spawn(lambda: second.scalar(select(func.count()).select_from(Person)
                                                              .where(Person.cin == "00000001"))) == 0

    _reading_sessions(db_url, scenario)


def test_a_request_refused_by_the_gate_keeps_its_session_and_any_other_failure_closes_it(db_url):
    _postgresql_only(db_url)

    class Refused(Exception):
        pass

    async def scenario(sessions, pid_of, _terminate) -> None:
        with pytest.raises(Refused):
            async with sessions.session(keep_on=(Refused,)) as session:
                pid = await pid_of(session)
                session.info["pending"] = ["an audit event of the refused request"]
                raise Refused
        async with sessions.session() as kept:
            assert kept is session and kept.info == {} and await pid_of(kept) == pid
        with pytest.raises(RuntimeError):
            async with sessions.session(keep_on=(Refused,)) as failed:
                raise RuntimeError("a bug, or a database error")
        async with sessions.session() as fresh:
            assert fresh is not failed
            assert await pid_of(fresh) == pid  # the closed session's connection went back to the pool

    _reading_sessions(db_url, scenario)


def test_a_cancelled_request_closes_its_session(db_url):
    """A request cancelled mid-way (its client gone, the server stopping) may leave its connection mid-statement:
    its session is closed, not lent again."""
    _postgresql_only(db_url)
    import asyncio

    async def scenario(sessions, pid_of, _terminate) -> None:
        inside = asyncio.Event()
        lent = []

        async def request() -> None:
            async with sessions.session(keep_on=(ValueError,)) as session:
                lent.append(session)
                await pid_of(session)
                inside.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(request())
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with sessions.session() as next_one:
            assert next_one is not lent[0]
            assert await pid_of(next_one) > 0

    _reading_sessions(db_url, scenario)


def test_a_kept_session_whose_connection_the_server_dropped_fails_once_and_is_replaced(db_url):
    _postgresql_only(db_url)
    from sqlalchemy.util import greenlet_spawn

    async def scenario(sessions, pid_of, terminate) -> None:
        async with sessions.session() as session:
            pid = await pid_of(session)
        await terminate(pid)
        with pytest.raises((exc.InterfaceError, exc.InternalError, exc.OperationalError)):
            async with sessions.session() as broken:  # used a moment ago: handed out as it is
                assert broken is session
                await pid_of(broken)
        async with sessions.session() as replacement:
            assert replacement is not session
            assert await pid_of(replacement) != pid
            assert await greenlet_spawn(lambda: replacement.connection().exec_driver_sql("SELECT 1").scalar()) == 1

    _reading_sessions(db_url, scenario)


def test_a_kept_session_idle_too_long_is_pinged_and_replaced_if_its_server_is_gone(db_url, monkeypatch):
    """As the pool does at checkout: the request itself never sees the dropped connection."""
    _postgresql_only(db_url)

    async def scenario(sessions, pid_of, terminate) -> None:
        async with sessions.session() as session:
            pid = await pid_of(session)
        await terminate(pid)
        monkeypatch.setattr(db, "PING_AFTER_IDLE_S", 0.0)
        async with sessions.session() as next_one:
            assert next_one is not session
            assert await pid_of(next_one) != pid

    _reading_sessions(db_url, scenario)


def test_no_more_reading_sessions_are_lent_at_once_than_the_pool_holds(db_url):
    _postgresql_only(db_url)
    import asyncio

    async def scenario(sessions, pid_of, _terminate) -> None:
        inside, most = 0, 0

        async def request() -> None:
            nonlocal inside, most
            async with sessions.session() as session:
                inside += 1
                most = max(most, inside)
                await pid_of(session)
                await asyncio.sleep(0.01)
                inside -= 1

        await asyncio.gather(*(request() for _ in range(6)))
        assert most == 2

    _reading_sessions(db_url, scenario, size=2)


def test_a_write_stores_what_sqlalchemy_stores(session):
    # The audit trail's insert: JSON columns (a None is JSON null, as SQLAlchemy writes it), times, text.
    from sqlalchemy import insert

    from labes.security.audit import _INSERT
    from labes.security.models import AuditEvent

    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    row = {"at": at, "actor": "cli:test", "entity_type": "x", "entity_id": "1", "before": None,
           "after": {"covered": True, "names": ["ب", "é"]}, "request_id": None}
    db.write(session.connection(), _INSERT, [{**row, "action": "test:write"}, {**row, "action": "test:write", "entity_id": "2"}])
    session.connection().execute(insert(AuditEvent.__table__), [{**row, "action": "test:sqlalchemy"}])
    columns = (AuditEvent.at, AuditEvent.actor, AuditEvent.entity_id, AuditEvent.before, AuditEvent.after,
               AuditEvent.request_id, func.coalesce(func.length(func.cast(AuditEvent.before, String)), -1))
    written = session.execute(select(*columns).where(AuditEvent.action == "test:write").order_by(AuditEvent.entity_id)).all()
    expected = session.execute(select(*columns).where(AuditEvent.action == "test:sqlalchemy")).one()
    assert [tuple(r) for r in written] == [tuple(expected), (*expected[:2], "2", *expected[3:])]


def test_a_write_that_breaks_a_constraint_raises_sqlalchemys_integrity_error(session):
    from sqlalchemy import bindparam, insert

    from labes.care.models import UsedChallenge

    statement = insert(UsedChallenge).values(nonce=bindparam("nonce"), expires_at=bindparam("at"))
    row = {"nonce": "n-1", "at": datetime(2026, 12, 1, tzinfo=UTC)}
    db.write(session.connection(), statement, [row])
    with pytest.raises(exc.IntegrityError):  # what the API turns into a 409, whichever path ran the statement
        db.write(session.connection(), statement, [row])


def test_a_read_is_seen_by_sqlalchemys_cursor_events(session):
    # Tracing, and this suite's guard against SQL on the event loop, listen to these events.
    from sqlalchemy import event

    from labes.care.patients import _FILE

    seen = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement)

    connection = session.connection()
    event.listen(connection, "before_cursor_execute", record)
    try:
        db.read(connection, _FILE[connection.dialect.name].statement,
                {"person_id": uuid.uuid4(), "on": date.today(), "year": 2026})
    finally:
        event.remove(connection, "before_cursor_execute", record)
    assert len(seen) == 1 and "SELECT 'head' AS part" in seen[0]


def test_the_reading_engine_reaches_the_same_server_with_the_same_settings():
    # asyncpg names libpq's options otherwise: they are translated, and one it has no name for is refused, not dropped.
    from sqlalchemy.engine import make_url

    url, connect_args = db.asyncpg_url(make_url(
        "postgresql+psycopg://labes:secret@db.example:6432/labes?options=-c%20lock_timeout%3D5s%20--statement_timeout%3D9s"
        "&sslmode=verify-full&application_name=labes-api&connect_timeout=3"))
    assert url.render_as_string(hide_password=False) == \
        "postgresql+asyncpg://labes:secret@db.example:6432/labes?ssl=verify-full"
    assert connect_args == {"timeout": 3.0, "server_settings": {
        "lock_timeout": "5s", "statement_timeout": "9s", "application_name": "labes-api"}}
    socket, none = db.asyncpg_url(make_url("postgresql+psycopg://labes@/labes?host=/var/run/postgresql"))
    assert (socket.query, none) == ({"host": "/var/run/postgresql"}, {})
    with pytest.raises(ValueError, match="target_session_attrs"):
        db.asyncpg_url(make_url("postgresql+psycopg://labes@db.example/labes?target_session_attrs=read-write"))
    with pytest.raises(ValueError, match="-c name=value"):
        db.asyncpg_url(make_url("postgresql+psycopg://labes@db.example/labes?options=-c%20lock_timeout"))


def test_the_reading_engine_applies_the_urls_settings(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("the reading engine is PostgreSQL's")
    import asyncio

    from sqlalchemy.engine import make_url

    url = make_url(db_url).update_query_dict({"options": "-c lock_timeout=4321ms", "application_name": "labes-reads"})
    engine = make_engine(url.render_as_string(hide_password=False))
    reading = db.make_reading_engine(engine, pool_size=1)

    async def settings() -> tuple[str, str]:
        try:
            async with reading.connect() as connection:
                return (await connection.exec_driver_sql(
                    "SELECT current_setting('lock_timeout'), current_setting('application_name')")).one()
        finally:
            await reading.dispose()

    try:
        assert tuple(asyncio.run(settings())) == ("4321ms", "labes-reads")
    finally:
        engine.dispose()


def test_a_server_whose_url_asyncpg_cannot_take_stops_at_start_naming_the_option(db_url, app_for):
    # The README's promise: not a server that starts and then fails (or silently drops the option) at its first read.
    if not db_url.startswith("postgresql"):
        pytest.skip("the reading engine is PostgreSQL's")
    from fastapi.testclient import TestClient
    from sqlalchemy.engine import make_url

    url = make_url(db_url).update_query_dict({"target_session_attrs": "any"})  # psycopg takes it; asyncpg has no such option
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        with pytest.raises(ValueError, match="target_session_attrs.*LABES_ASYNC_READS=false"), \
                TestClient(app_for(sessionmaker(bind=engine), worker_threads=0)):
            pass
        with TestClient(app_for(sessionmaker(bind=engine), worker_threads=0, async_reads=False)) as client:
            assert client.get("/readyz").status_code == 200  # the way out the message names
    finally:
        engine.dispose()
