"""courier pickups: a row per request for a courier to collect, written before the courier is called

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 10:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('courier_pickups',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('courier_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('label_batch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('courier', sa.String(length=32), nullable=False),
    sa.Column('dedupe_key', sa.String(length=128), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('ready_from', sa.String(length=5), nullable=False),
    sa.Column('ready_until', sa.String(length=5), nullable=False),
    sa.Column('parcels', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('pickup_ref', sa.String(length=64), nullable=True),
    sa.Column('message', sa.Text(), nullable=True),
    sa.Column('requested_by', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['shop_id', 'courier_account_id'], ['courier_accounts.shop_id', 'courier_accounts.id'], name=op.f('fk_courier_pickups_shop_id_courier_account_id_courier_accounts')),
    sa.ForeignKeyConstraint(['shop_id', 'label_batch_id'], ['label_batches.shop_id', 'label_batches.id'], name=op.f('fk_courier_pickups_shop_id_label_batch_id_label_batches')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_courier_pickups_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_courier_pickups')),
    sa.UniqueConstraint('shop_id', 'dedupe_key', name=op.f('uq_courier_pickups_shop_id_dedupe_key')),
    sa.UniqueConstraint('shop_id', 'id', name=op.f('uq_courier_pickups_shop_id_id'))
    )
    with op.batch_alter_table('courier_pickups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_courier_pickups_shop_id'), ['shop_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('courier_pickups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_courier_pickups_shop_id'))

    op.drop_table('courier_pickups')
