"""Audit events written at once, sealed after commit

A write no longer takes the chain's lock: its events are inserted with its transaction, numbered by `id`
(the order they were written), and a sealer chains them shortly after (`seq`, `prev_hash` and `hash`
are NULL until then). Existing events keep their chain and get id = seq.

The table is rebuilt (new table, copy, drop, rename), which both backends do the same way.

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

Id = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
CONTENT = 'at, actor, action, entity_type, entity_id, "before", "after", request_id, prev_hash, hash'


def _content(*, sealed: bool) -> list[sa.Column]:
    return [
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=160), nullable=False),
        sa.Column('action', sa.String(length=80), nullable=False),
        sa.Column('entity_type', sa.String(length=40), nullable=False),
        sa.Column('entity_id', sa.String(length=80), nullable=False),
        sa.Column('before', sa.JSON(), nullable=True),
        sa.Column('after', sa.JSON(), nullable=True),
        sa.Column('request_id', sa.String(length=64), nullable=True),
        sa.Column('prev_hash', sa.String(length=64), nullable=not sealed),
        sa.Column('hash', sa.String(length=64), nullable=not sealed),
    ]


def _set_aside(name: str) -> None:
    """Rename the table to `name`, freeing its index and primary-key names for the rebuilt one."""
    op.drop_index('ix_audit_event_entity', table_name='audit_event')
    op.drop_index(op.f('ix_audit_event_action'), table_name='audit_event')
    op.rename_table('audit_event', name)
    if op.get_bind().dialect.name == 'postgresql':  # PostgreSQL names constraints per schema, SQLite per table
        op.drop_constraint('pk_audit_event', name, type_='primary')


def _create_indexes() -> None:
    op.create_index(op.f('ix_audit_event_action'), 'audit_event', ['action'], unique=False)
    op.create_index('ix_audit_event_entity', 'audit_event', ['entity_type', 'entity_id'], unique=False)


def upgrade() -> None:
    _set_aside('audit_event_0004')
    op.create_table('audit_event',
    sa.Column('id', Id, autoincrement=True, nullable=False),
    sa.Column('seq', Id, nullable=True),
    *_content(sealed=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_event')),
    sa.UniqueConstraint('seq', name=op.f('uq_audit_event_seq'))
    )
    op.execute(f"INSERT INTO audit_event (id, seq, {CONTENT}) SELECT seq, seq, {CONTENT} FROM audit_event_0004")
    op.drop_table('audit_event_0004')
    _create_indexes()
    op.create_index('ix_audit_event_unsealed', 'audit_event', ['id'], unique=False,
                    postgresql_where=sa.text('seq IS NULL'), sqlite_where=sa.text('seq IS NULL'))
    if op.get_bind().dialect.name == 'postgresql':  # SQLite's rowid continues after max(id) by itself
        op.execute("SELECT setval(pg_get_serial_sequence('audit_event', 'id'), COALESCE(MAX(id), 0) + 1, false) "
                   "FROM audit_event")


def downgrade() -> None:
    if op.get_bind().scalar(sa.text('SELECT COUNT(*) FROM audit_event WHERE seq IS NULL')):
        raise RuntimeError('some audit events are not sealed yet: stop the app, run `labes audit seal`, '
                           'then downgrade')
    op.drop_index('ix_audit_event_unsealed', table_name='audit_event')
    _set_aside('audit_event_0005')
    op.create_table('audit_event',
    sa.Column('seq', Id, autoincrement=False, nullable=False),
    *_content(sealed=True),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_audit_event'))
    )
    op.execute(f"INSERT INTO audit_event (seq, {CONTENT}) SELECT seq, {CONTENT} FROM audit_event_0005")
    op.drop_table('audit_event_0005')
    _create_indexes()
