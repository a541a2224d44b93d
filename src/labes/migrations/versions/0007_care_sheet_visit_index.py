"""Index the visit a care sheet bills

A private-scheme patient's visit to a specialist needs their family doctor's referral: a visit of the family
doctor's in the last months whose care sheet the fund accepted. Without an index on `care_sheet.visit_id`, that
join read every accepted care sheet of the year (PostgreSQL then re-planned the statement at each care sheet,
its generic plan costed at the whole table).

On PostgreSQL the index is built CONCURRENTLY, outside the migration's transaction: care sheets keep arriving
while it is built on a table of millions of rows. Should the build fail, PostgreSQL leaves an invalid index of that
name: the migration then stops at it (drop it and run the migration again) rather than keep it.

Revision ID: 0007
Revises: 0006
"""
from __future__ import annotations

from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

INDEX = 'ix_care_sheet_visit_id'  # the name the metadata's naming convention gives it


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.create_index(op.f(INDEX), 'care_sheet', ['visit_id'], postgresql_concurrently=True)
    else:
        op.create_index(op.f(INDEX), 'care_sheet', ['visit_id'])


def downgrade() -> None:
    op.drop_index(op.f(INDEX), table_name='care_sheet')
