"""inbox: inbound_events drops its shop_id-only index (the unique (shop_id, dedupe_key) index leads with shop_id)

Every webhook inserts one inbound_events row; each index is one more B-tree page its commit writes. This one
served no query (nor the shop's cascade delete) that the unique index does not.

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-29 13:40:00
"""
from alembic import op


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_events_shop_id')


def downgrade() -> None:
    with op.batch_alter_table('inbound_events', schema=None) as batch_op:
        batch_op.create_index('ix_inbound_events_shop_id', ['shop_id'], unique=False)
