"""Drop the audit trail's index on `action`

No query reads the trail by action (the trail is listed by entity, and verified and sealed in order), and every
audited request paid for the index twice: its event's insert, and the sealer's update (which changes `seq`, so it
cannot be a heap-only update, and every index gets the new row version). An event's insert costs PostgreSQL
≈ 138,000 instructions with the index and ≈ 121,000 without (BENCHMARKS.md, thirteenth session); the index also
grew with every event, millions a day at national scale.

On PostgreSQL the index is dropped CONCURRENTLY, outside the migration's transaction, so that audited requests
keep writing while it goes; the downgrade builds it again the same way.

Revision ID: 0008
Revises: 0007
"""
from __future__ import annotations

from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

INDEX = 'ix_audit_event_action'


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(op.f(INDEX), table_name='audit_event', postgresql_concurrently=True)
    else:
        op.drop_index(op.f(INDEX), table_name='audit_event')


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.create_index(op.f(INDEX), 'audit_event', ['action'], postgresql_concurrently=True)
    else:
        op.create_index(op.f(INDEX), 'audit_event', ['action'])
