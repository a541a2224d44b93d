"""Bank accounts of payees

Where the fund pays: a facility's, a professional's and a person's bank account (a Tunisian IBAN), and
the account each provider statement was paid to (kept as paid, whatever the registry says later).

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

COLUMNS = (('facility', 'iban'), ('professional', 'iban'), ('person', 'iban'), ('provider_statement', 'payee_iban'))


def upgrade() -> None:
    for table, column in COLUMNS:
        with op.batch_alter_table(table) as batch_op:
            batch_op.add_column(sa.Column(column, sa.String(length=34), nullable=True))


def downgrade() -> None:
    # In place on both backends (SQLite ≥ 3.35 drops a column itself): a batch rebuild would drop and re-create
    # the tables, which foreign keys from other tables forbid once there is data.
    for table, column in reversed(COLUMNS):
        with op.batch_alter_table(table, recreate="never") as batch_op:
            batch_op.drop_column(column)
