"""The migrations build exactly the schema the models describe, on each backend."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select, text
from sqlalchemy.schema import CreateTable

from labes.db import Base
from labes.migrate import alembic_config, current_revision, head_revision, upgrade
from labes.registry import providers
from labes.registry.models import Person, Practice
from tests import factories


def test_migrated_database_matches_the_models(engine):
    with engine.connect() as connection:
        assert current_revision(connection) == head_revision()
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def test_the_bank_accounts_come_off_and_back_with_data_in_the_tables(db_url, engine, committed):
    # A rebuilt table would be dropped first, which the foreign keys pointing at it forbid once there are rows.
    with committed() as session:
        member = factories.member(session)
        factories.dependant(session, member.social_id)
        doctor, clinic = factories.professional(session), factories.facility(session)
        providers.add_practice(session, actor=factories.ACTOR, licence=doctor.licence, facility_code=clinic.code)
        session.commit()

    command.downgrade(alembic_config(db_url), "0005")
    try:
        columns = {table: {c["name"] for c in inspect(engine).get_columns(table)}
                   for table in ("person", "facility", "professional", "provider_statement")}
        assert not any("iban" in names or "payee_iban" in names for names in columns.values())
    finally:
        upgrade(db_url)

    with engine.connect() as connection:
        assert current_revision(connection) == head_revision()
    with committed() as session:
        assert session.scalar(select(func.count()).select_from(Person)) == 2
        assert session.scalar(select(func.count()).select_from(Practice)) == 1
        assert session.scalar(select(func.count(Person.iban))) == 0  # the accounts are gone, the rows stay


def test_the_card_table_leaves_room_for_heap_only_updates(engine):
    # A card's last use is noted on nearly every rights check: with room on its page, that update touches no index.
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no fillfactor")
    with engine.connect() as connection:
        options = connection.scalar(text("SELECT reloptions FROM pg_class WHERE relname = 'card'"))
    assert options == ["fillfactor=80"]
    assert "WITH (fillfactor = 80)" in str(CreateTable(Base.metadata.tables["card"]).compile(dialect=engine.dialect))
