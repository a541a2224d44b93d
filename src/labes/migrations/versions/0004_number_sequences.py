"""PostgreSQL sequences for the point of care's numbers

Care sheets, prescriptions, dispensations and prior approvals are numbered from sequences on PostgreSQL:
a counter row would be locked by each transaction until it commits, so every care sheet in the country
would wait for the one before it. Sequences never wait (a rolled-back number is skipped). SQLite, whose
writes are serialised anyway, keeps the counter table.

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

SERIES = ("cs", "rx", "ds", "ap")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for series in SERIES:
            op.execute(f"CREATE SEQUENCE IF NOT EXISTS number_{series} CACHE 20")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for series in SERIES:
            op.execute(f"DROP SEQUENCE IF EXISTS number_{series}")
