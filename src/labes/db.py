"""Engine, sessions and the declarative base shared by every domain."""

from __future__ import annotations

import asyncio
import copy
import logging
import shlex
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from functools import lru_cache, partial
from types import SimpleNamespace
from typing import Any

from psycopg import RawCursor
from sqlalchemy import MetaData, Select, cast, create_engine, event, exc, func, literal_column, null, union_all
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql import Executable
from sqlalchemy.util import greenlet_spawn

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base; constraint names are deterministic so Alembic diffs stay stable."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin, so savepoints really nest.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str, **kwargs) -> Engine:
    """Create an engine for `url` with the settings Labes needs on SQLite and PostgreSQL."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # IMMEDIATE: take the write lock when the transaction starts. A deferred transaction that read
        # first and then wants to write would fail at once ("database is locked") instead of waiting.
        event.listen(engine, "begin", lambda connection: connection.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    engine = create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    return engine


def make_reading_engine(engine: Engine, *, pool_size: int) -> AsyncEngine:
    """An engine of asyncpg, PostgreSQL's asynchronous driver, to the database of `engine`, for the requests that
    only read (`signed_route(reading=True)`): each statement its own transaction (AUTOCOMMIT), awaited on the event
    loop, so the process serves other requests while one waits on the database. The synchronous code of the
    request runs in a greenlet (`sqlalchemy.util.greenlet_spawn`) and `read` awaits its statements there.
    `pool_size` connections at most: a request beyond them awaits one, on the loop.

    asyncpg, not psycopg's asynchronous connection: a rights check's read costs its process ≈ 100 µs of CPU through
    asyncpg and ≈ 190 µs through psycopg (BENCHMARKS.md, tenth session), the database's work being the same."""
    url, connect_args = asyncpg_url(engine.url)
    # No rollback when a connection goes back to the pool: in AUTOCOMMIT no transaction outlives its statement.
    reading = create_async_engine(url, connect_args=connect_args, isolation_level="AUTOCOMMIT", pool_size=pool_size,
                                  max_overflow=0, pool_reset_on_return=None)
    _ping_when_idle(reading.sync_engine)
    return reading


class ReadingSessions:
    """Sessions of the reading engine (`make_reading_engine`) kept open from one request to the next, each holding
    its connection: a request that only reads takes one, awaits its statements, and gives it back.

    A Session made for each request, its connection checked out, begun, ended and checked in again, cost a rights
    check ≈ 220,000 of its ≈ 4.4 M instructions (5 %, BENCHMARKS.md, twelfth session); a Session kept open hands the
    next request its connection as it is. Between requests a session holds nothing: on this engine every statement
    commits by itself (AUTOCOMMIT), and its objects and `info` are cleared when it is given back. A request that
    fails with an exception other than `keep_on` (a database error, a cancelled request) closes its session: the
    connection goes back to the pool, or is discarded if it was found broken. A session idle for longer than
    `PING_AFTER_IDLE_S` is pinged before it is handed out, as the pool does at checkout, and replaced if the server
    no longer answers. At most `size` at once; a request beyond them waits for one, on the loop.
    """

    def __init__(self, factory: sessionmaker[Session], *, size: int) -> None:
        self._factory = factory
        self._idle: list[tuple[Session, float]] = []  # (session, given back at): the last given back is taken first
        self._slots = asyncio.Semaphore(size)

    @asynccontextmanager
    async def session(self, *, keep_on: tuple[type[BaseException], ...] = ()) -> AsyncIterator[Session]:
        """Lend a session for one request's statements, run with `greenlet_spawn`."""
        async with self._slots:
            session = await self._take()
            try:
                yield session
            except keep_on:
                self._give_back(session)
                raise
            except BaseException:
                await _close(session)
                raise
            self._give_back(session)

    async def close(self) -> None:
        """Close the idle sessions (their connections go back to the pool): at the end of the server's lifespan."""
        while self._idle:
            await _close(self._idle.pop()[0])

    async def _take(self) -> Session:
        while self._idle:
            session, since = self._idle.pop()
            if time.monotonic() - since < PING_AFTER_IDLE_S:
                return session
            try:
                await greenlet_spawn(_ping_session, session)
                return session
            except Exception as error:  # noqa: BLE001 - any failure means its connection is gone
                log.warning("an idle reading connection no longer answers; replaced",
                            extra={"fields": {"error": str(error)}})
                await _close(session)
        return self._factory()

    def _give_back(self, session: Session) -> None:
        session.expunge_all()
        session.info.clear()
        self._idle.append((session, time.monotonic()))


def _ping_session(session: Session) -> None:
    connection = session.connection()
    try:
        connection.dialect.do_ping(connection.connection.dbapi_connection)
    except Exception as error:
        connection.invalidate(error)
        raise


async def _close(session: Session) -> None:
    try:
        await greenlet_spawn(session.close)
    except Exception as error:  # noqa: BLE001 - a broken connection may fail to close; it is discarded either way
        log.warning("a reading session failed to close", extra={"fields": {"error": str(error)}})


def asyncpg_url(url: URL) -> tuple[URL, dict[str, Any]]:
    """Return the psycopg `url` (libpq's options in its query) as asyncpg's URL and connect arguments: the same
    server, user and settings. `options=-c name=value …` (or `--name=value`) and `application_name` become asyncpg's
    `server_settings`, `sslmode` its `ssl` (which takes the same modes), `connect_timeout` its `timeout`; `host`
    (a socket's directory too) and `port` stay as they are. An option asyncpg has no name for is refused here,
    rather than dropped."""
    query, settings, connect_args = dict(url.query), {}, {}
    for word in shlex.split(query.pop("options", "")):
        if word == "-c":
            continue
        name, equals, value = word.removeprefix("--").removeprefix("-c").partition("=")
        if not equals:
            raise ValueError(f"LABES_DATABASE_URL: options={word!r} is not '-c name=value'")
        settings[name] = value
    if "application_name" in query:
        settings["application_name"] = query.pop("application_name")
    if "sslmode" in query:
        query["ssl"] = query.pop("sslmode")
    if "connect_timeout" in query:
        connect_args["timeout"] = float(query.pop("connect_timeout"))
    if unknown := sorted(set(query) - {"host", "port", "ssl"}):
        raise ValueError(f"LABES_DATABASE_URL: asyncpg (LABES_ASYNC_READS) takes no {', '.join(unknown)}; "
                         "set LABES_ASYNC_READS=false to read through psycopg")
    if settings:
        connect_args["server_settings"] = settings
    return url.set(drivername="postgresql+asyncpg", query=query), connect_args


def _ping_when_idle(engine: Engine) -> None:
    event.listen(engine, "checkin", _note_idle)
    event.listen(engine, "checkout", partial(_ping_if_idle, engine.dialect))


# A connection given back to the pool less than this long ago is used as it is; one idle for longer is
# tested first (a round trip). Pinging at every checkout (`pool_pre_ping`) would cost a round trip per
# request, a tenth of a rights check; a busy pool's connections are never idle. If the server goes away
# under a busy pool, the first statement that fails invalidates the whole pool and the others reconnect.
PING_AFTER_IDLE_S = 10.0


def _note_idle(_dbapi_connection, record) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dialect, dbapi_connection, record, _proxy) -> None:
    idle_since = record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
        return
    try:
        dialect.do_ping(dbapi_connection)  # the dialect's own ping: outside any transaction
    except Exception as error:  # noqa: BLE001 - any failure means this connection is gone
        # The pool discards this connection and checks out another (SQLAlchemy's documented protocol).
        raise exc.DisconnectionError(f"an idle connection no longer answers: {error}") from error


@lru_cache
def get_engine() -> Engine:
    """Return the process-wide engine for the configured database."""
    from labes.config import get_settings

    settings = get_settings()
    kwargs = {}
    if not settings.database_url.startswith("sqlite"):
        kwargs = {"pool_size": settings.db_pool_size, "max_overflow": settings.db_pool_size}
    return make_engine(settings.database_url, **kwargs)


@lru_cache
def get_sessionmaker() -> sessionmaker[Session]:
    """Return the process-wide session factory."""
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session] | None = None) -> Iterator[Session]:
    """Run one unit of work: commit if the block succeeds, roll back if it raises."""
    session = (factory or get_sessionmaker())()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def columns_by_prefix(keys: Iterable[str]) -> dict[str, list[tuple[str, int]]]:
    """Group a result's `<prefix>__<column>` keys (its columns, in order) by prefix: {prefix: [(column, position), …]};
    other keys are left out."""
    groups: dict[str, list[tuple[str, int]]] = {}
    for index, key in enumerate(keys):
        prefix, labelled, column = key.partition("__")
        if labelled:
            groups.setdefault(prefix, []).append((column, index))
    return groups


@dataclass(frozen=True)
class UnionRead:
    """Rows of several shapes read by one statement (see `union_read`), and where each part's columns are."""

    statement: Select  # every part's columns side by side, the other parts' NULL
    positions: dict[str, list[tuple[str, int]]]
    records: Select  # each part's row as one value (ROW(…)): for asyncpg, which reads it back typed
    names: dict[str, tuple[str, ...]]  # each part's columns, in order

    def rows(self, connection: Connection, parameters: dict[str, Any]) -> dict[str, list[tuple[Any, ...]]]:
        """Run the read; return {part: [each of its rows as a tuple of its own columns, in order]}."""
        out: dict[str, list[tuple[Any, ...]]] = {part: [] for part in self.positions}
        if connection.dialect.driver == "asyncpg":
            for part, record in read(connection, self.records, parameters):
                out[part].append(record)
        else:
            for row in read(connection, self.statement, parameters):
                out[row[0]].append(tuple(row[index] for _, index in self.positions[row[0]]))
        return out

    def namespaces(self, rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[SimpleNamespace]]:
        """Return the rows of `rows()` as namespaces of their part's columns."""
        return {part: [SimpleNamespace(**dict(zip(self.names[part], row, strict=True))) for row in found]
                for part, found in rows.items()}


def union_read(**parts: Select) -> UnionRead:
    """Read the rows of every part in one statement (UNION ALL): rows of different shapes in one round trip.

    Two forms of the same read. In `statement`, each row carries its part's name first and its own columns as
    `<part>__<column>`; the other parts' columns are typed NULLs. Each part keeps its own FROM and WHERE (no
    subquery around it), and only the first names the columns (a union takes its names from there): the
    statement stays short, which its driver and server parse faster. In `records` (PostgreSQL through asyncpg,
    which decodes an anonymous record's fields by their types), each row is its part's name and one ROW of its
    columns: no NULLs to project, send and decode, so PostgreSQL starts and runs the plan in ≈ 20 % less time
    (7 rows of 90 columns for a rights check). A part may not have its own LIMIT or ORDER BY (SQLite refuses
    them in a union). Built once, where the statement is defined: splitting costs no layout work.
    """
    columns = [(name, column) for name, statement in parts.items() for column in statement.selected_columns]
    if any(statement._limit_clause is not None or statement._order_by_clauses for statement in parts.values()):
        raise ValueError("a part of a union read may not have its own LIMIT or ORDER BY")
    branches = []
    for index, (name, statement) in enumerate(parts.items()):
        if index == 0:  # the union's names and types: its NULLs typed, for the database and for reading the rows
            values = [literal_column(f"'{name}'").label("part"), *[
                (column if part == name else cast(null(), column.type)).label(f"{part}__{column.name}")
                for part, column in columns]]
        else:  # plain NULLs take the first part's types
            values = [literal_column(f"'{name}'"), *[column if part == name else literal_column("NULL")
                                                     for part, column in columns]]
        branches.append(statement.with_only_columns(*values))
    statement = union_all(*branches)
    records = union_all(*[part.with_only_columns(literal_column(f"'{name}'").label("part"),
                                                 func.row(*part.selected_columns).label("record"))
                          for name, part in parts.items()])
    positions = columns_by_prefix(statement.selected_columns.keys())
    names = {part: tuple(column for column, _ in columns) for part, columns in positions.items()}
    return UnionRead(statement, positions, records, names)


def read(connection: Connection, statement: Executable, parameters: dict[str, Any]) -> Sequence[Sequence[Any]]:
    """Return the rows of `statement` (positional: `row[3]`): the reads, and the writes with RETURNING, that
    every point-of-care request makes.

    On PostgreSQL the statement is compiled once, with numbered parameters ($1, $2: the server's own), and
    handed to the driver as it is (psycopg's raw cursor; asyncpg on the reading engine), in the connection's
    transaction: SQLAlchemy's result set-up (and the column descriptions psycopg builds for it) cost more client
    time than the statement, ≈ 0.1 ms a statement, and psycopg's own conversion of named parameters is cached
    only for statements under 4 KiB.
    The parameters are converted as SQLAlchemy would (its types' bind processors); a statement with a column
    SQLAlchemy would convert, and every statement on another database, goes through SQLAlchemy as usual. For
    statements built once, at import: each new statement object is compiled again.
    """
    prepared = _driver_ready(statement, connection.dialect) if connection.dialect.name == "postgresql" else None
    if prepared is None:
        return connection.execute(statement, parameters).all()
    return _run(connection, prepared.sql, [prepared.parameters(parameters)], rows=True)


def write(connection: Connection, statement: Executable, rows: Sequence[dict[str, Any]]) -> None:
    """Run a write (no RETURNING) once for each of `rows`, as `read` runs a read: through psycopg on PostgreSQL."""
    prepared = _driver_ready(statement, connection.dialect) if connection.dialect.name == "postgresql" else None
    if prepared is None or not rows:
        if rows:
            connection.execute(statement, list(rows))
        return
    _run(connection, prepared.sql, [prepared.parameters(row) for row in rows], rows=False)


def _run(connection: Connection, sql: str, values: list[list[Any]], *, rows: bool) -> Sequence[Sequence[Any]] | None:
    """Run `sql` once for each of `values` on the connection's own driver connection (parameters by position, as
    compiled: no conversion), as SQLAlchemy would: its cursor events are fired (for tracing and the tests' guards;
    with no execution context) and its errors raised as SQLAlchemy raises them. `rows`: return the rows (one run).

    psycopg's connections get a raw cursor. A connection of the asynchronous engine (`make_reading_engine`) gets
    the cursor of SQLAlchemy's asyncpg adapter, which awaits asyncpg in the request's greenlet and caches the
    prepared statements (the SQL is already asyncpg's: numbered parameters)."""
    record, dialect = connection.connection, connection.dialect
    many = len(values) > 1
    parameters = values if many else values[0]
    try:
        if dialect.is_async:
            cursor = record.dbapi_connection.cursor()
        else:
            cursor = RawCursor(record.driver_connection)
        try:
            connection.dispatch.before_cursor_execute(connection, cursor, sql, parameters, None, many)
            if many:
                cursor.executemany(sql, values)
            else:
                cursor.execute(sql, values[0])
            found = cursor.fetchall() if rows else None
        finally:
            cursor.close()
        connection.dispatch.after_cursor_execute(connection, cursor, sql, parameters, None, many)
        return found
    except dialect.loaded_dbapi.Error as error:
        # asyncpg may find the server gone before it notices the socket closed: its protocol, still waiting on a
        # statement the server never answered, refuses the next one (InternalClientError). Either way the
        # connection is of no further use.
        gone = dialect.is_disconnect(error, record.dbapi_connection, None) or (
            dialect.is_async and isinstance(error, getattr(dialect.loaded_dbapi, "InternalClientError", ())))
        if gone:
            connection.invalidate(error)  # as SQLAlchemy does when its own statement finds the server gone
        # The same exception classes (IntegrityError, OperationalError, …) as a statement run by SQLAlchemy.
        raise exc.DBAPIError.instance(sql, None, error, dialect.loaded_dbapi.Error, connection_invalidated=gone,
                                      dialect=dialect) from error


@dataclass(frozen=True)
class _Prepared:
    sql: str
    compiled: Any
    order: tuple[str, ...]  # the parameters' names, by number
    processors: tuple[tuple[str, Any], ...]  # (parameter, SQLAlchemy's bind processor)

    def parameters(self, given: dict[str, Any]) -> list[Any]:
        values = self.compiled.construct_params(given)
        for name, process in self.processors:
            values[name] = process(values[name])
        return [values[name] for name in self.order]


@lru_cache(maxsize=64)
def _driver_ready(statement: Executable, dialect) -> _Prepared | None:
    """Return `statement` compiled for `dialect` with numbered parameters, or None if a column it returns
    needs SQLAlchemy's conversion (or a parameter expands to a list)."""
    compiled = statement.compile(dialect=_numbered(dialect))
    binds = compiled.binds  # by the name the SQL gives each parameter
    if any(bind.expanding for bind in binds.values()) or any(
            column.type.dialect_impl(dialect).result_processor(dialect, None) is not None
            for column in getattr(statement, "exported_columns", ())):
        return None
    processors = tuple((name, process) for name, bind in binds.items()
                       if (process := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None)
    return _Prepared(compiled.string, compiled, tuple(compiled.positiontup), processors)


@lru_cache(maxsize=8)
def _numbered(dialect):
    """`dialect` rendering parameters as $1, $2 (SQLAlchemy's "numeric_dollar" style; a parameter used twice
    keeps its number); everything else about the SQL is the same."""
    numbered = copy.copy(dialect)
    numbered.paramstyle, numbered.positional = "numeric_dollar", True
    return numbered


def upsert(session: Session, model: type[Base], rows: list[dict], *, key: tuple[str, ...] = ("id",)) -> None:
    """Insert `rows` into `model`'s table, updating the non-key columns of rows whose `key` exists.

    Values must already be in storage form: UUIDs as 32 hex digits, dates as ISO text (what
    SQLAlchemy stores on SQLite, and what PostgreSQL's COPY reads).

    Bulk loads bypass the ORM: PostgreSQL gets COPY into a temporary staging table and one
    INSERT … SELECT … ON CONFLICT; SQLite gets one prepared statement run over all rows.
    """
    if not rows:
        return
    table = model.__table__
    columns = list(rows[0])
    updates = [c for c in columns if c not in key]
    conflict = (f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in updates)
                if updates else f"ON CONFLICT ({', '.join(key)}) DO NOTHING")
    column_list = ", ".join(columns)
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        stage = f"stage_{table.name}"
        connection.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {stage} "
                                   f"(LIKE {table.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        with connection.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f"COPY {stage} ({column_list}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[c] for c in columns])
        connection.exec_driver_sql(f"INSERT INTO {table.name} ({column_list}) SELECT {column_list} FROM {stage} {conflict}")
        connection.exec_driver_sql(f"DELETE FROM {stage}")
        return
    placeholders = ", ".join("?" for _ in columns)
    connection.exec_driver_sql(f"INSERT INTO {table.name} ({column_list}) VALUES ({placeholders}) {conflict}",
                               [tuple(row[c] for c in columns) for row in rows])
