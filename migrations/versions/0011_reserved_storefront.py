"""storefront: storefront_events drops its shop_id-only index (ix_storefront_events_shop_visitor leads with shop_id)

Every index costs each insert of `POST /s/events` a B-tree write; this one served no query that the
composite index does not.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29 10:20:00
"""
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('storefront_events', schema=None) as batch_op:
        batch_op.drop_index('ix_storefront_events_shop_id')


def downgrade() -> None:
    with op.batch_alter_table('storefront_events', schema=None) as batch_op:
        batch_op.create_index('ix_storefront_events_shop_id', ['shop_id'], unique=False)
