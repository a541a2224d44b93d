"""The test harness's promise: what a test commits inside the outer transaction is rolled back."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

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
