"""Leave room on the card table's pages for a card's next version

A rights check notes its patient's card's last use (once an hour at most: `care.transactions._LAST_USED_EVERY`),
and a patient is seldom checked twice in the hour, so nearly every check updates one card row. `last_used_at` is
not indexed: the update can be heap-only (no new entry in any of the card's seven indexes) when the row's page has
room for the new version. Cards are issued in bulk, their pages packed full (fillfactor 100), so until the pages
have been pruned each first note was a full update. Counted in a stand-alone PostgreSQL backend under callgrind
(bench/pg_cost.py --statement close, a new patient's card each run, the table rewritten at each setting): 474,121
instructions for a check's closing statement on packed pages, 412,511 at fillfactor 80 (BENCHMARKS.md, thirteenth
session).

The setting applies to pages written from now on; `VACUUM FULL card` (or pg_repack, online) applies it to the
cards already issued, in a maintenance window. PostgreSQL only: SQLite has no such setting.

Revision ID: 0009
Revises: 0008
"""
from __future__ import annotations

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE card SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE card RESET (fillfactor)")
