"""Test databases: built by the Alembic migrations, on SQLite and (when configured) PostgreSQL.

Every test that touches the database runs once per backend. A test's writes happen inside an outer
transaction that is rolled back at the end; the code under test commits into a savepoint.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from labes.config import Settings
from labes.db import Base, make_engine
from labes.migrate import upgrade
from labes.security.deps import unit_of_work_on_the_loop
from labes.models import load_all

load_all()
PG_URL = os.environ.get("LABES_TEST_DATABASE_URL")
BACKENDS = ["sqlite", "postgresql"]


@event.listens_for(Engine, "before_cursor_execute")
def _no_sql_on_the_event_loop(conn, cursor, statement, parameters, context, executemany) -> None:
    """Fail any test in which the app runs SQL on its event loop (an answer validated there that lazy-loads, say):
    a statement that waits — for SQLite's write lock, for a slow query — would stall every request of the process.
    Only a unit of work the server runs there on purpose (`LABES_WORKER_THREADS=0`) may, and a statement awaited
    there through the asynchronous driver (a reading request's, `LABES_ASYNC_READS`), which stalls nothing."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    if unit_of_work_on_the_loop() or conn.dialect.is_async:  # put there on purpose, or awaited (db.make_reading_engine)
        return
    raise AssertionError(f"SQL on the event loop: {statement[:120]}")


def _reset_postgresql(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def db_url(request, tmp_path_factory) -> str:
    """The URL of a freshly migrated test database."""
    if request.param == "postgresql":
        if not PG_URL:
            if os.environ.get("LABES_REQUIRE_ALL_BACKENDS"):
                pytest.fail("LABES_REQUIRE_ALL_BACKENDS is set but LABES_TEST_DATABASE_URL is not")
            pytest.skip("PostgreSQL tests need LABES_TEST_DATABASE_URL (set by .ci/run)")
        url = PG_URL
        _reset_postgresql(url)
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'labes-test.db'}"
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def factory(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions joined to one outer transaction that is rolled back after the test."""
    connection = engine.connect()
    outer = connection.begin()
    yield sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    outer.rollback()
    connection.close()


@pytest.fixture
def session(factory: sessionmaker[Session]) -> Iterator[Session]:
    with factory() as session:
        yield session


@pytest.fixture
def committed(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """A session factory whose commits are real (CLI, imports); every table is emptied afterwards."""
    yield sessionmaker(bind=engine, expire_on_commit=False)
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory):
    """The fund's keys (card authority, seal), made once per test run."""
    from labes.cards.crypto import init_keys

    directory = tmp_path_factory.mktemp("keys")
    init_keys(directory)
    return directory


@pytest.fixture
def app_for(keys_dir):
    """Build the API over a session factory (`options`: other settings, e.g. `worker_threads=0`)."""
    from labes.app import create_app

    def build(factory: sessionmaker[Session], **options):
        # No sealer: its thread would share the test's connection with the requests' threads.
        settings = Settings(database_url="sqlite://", environment="test", log_level="WARNING", keys_dir=keys_dir,
                            audit_seal_interval=0, **options)
        return create_app(settings, factory)

    return build


@pytest.fixture
def client(app_for, factory) -> Iterator[TestClient]:
    with TestClient(app_for(factory)) as test_client:
        yield test_client


@pytest.fixture
def today() -> date:
    return date.today()


def _clear_caches() -> None:
    from labes import config, db

    config.get_settings.cache_clear()
    db.get_engine.cache_clear()
    db.get_sessionmaker.cache_clear()


@pytest.fixture
def cli_runner(engine, committed, monkeypatch):
    """Point the `labes` command at the test database for one test; put back the logging it configures."""
    import logging

    from typer.testing import CliRunner

    from labes import db

    monkeypatch.setenv("LABES_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    _clear_caches()
    labes_log = logging.getLogger("labes")
    saved = labes_log.handlers[:], labes_log.level, labes_log.propagate
    yield CliRunner()
    labes_log.handlers[:], labes_log.level, labes_log.propagate = saved
    if db.get_engine.cache_info().currsize:
        db.get_engine().dispose()
    _clear_caches()
