"""courier pickup cancel and documents: a pickup can be called off, and the courier's handover printout is kept

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-29 14:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('courier_pickups', schema=None) as batch_op:
        batch_op.add_column(sa.Column('courier_data', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('cancelled_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('cancelled_by', sa.String(length=255), nullable=True))

    op.create_table('courier_documents',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('label_batch_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('courier_pickup_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('courier', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('dedupe_key', sa.String(length=128), nullable=False),
    sa.Column('reference', sa.String(length=64), nullable=True),
    sa.Column('media_type', sa.String(length=64), nullable=False),
    sa.Column('content', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['shop_id', 'courier_pickup_id'], ['courier_pickups.shop_id', 'courier_pickups.id'], name=op.f('fk_courier_documents_shop_id_courier_pickup_id_courier_pickups')),
    sa.ForeignKeyConstraint(['shop_id', 'label_batch_id'], ['label_batches.shop_id', 'label_batches.id'], name=op.f('fk_courier_documents_shop_id_label_batch_id_label_batches')),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_courier_documents_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_courier_documents')),
    sa.UniqueConstraint('shop_id', 'dedupe_key', name=op.f('uq_courier_documents_shop_id_dedupe_key')),
    sa.UniqueConstraint('shop_id', 'id', name=op.f('uq_courier_documents_shop_id_id'))
    )
    with op.batch_alter_table('courier_documents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_courier_documents_shop_id'), ['shop_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('courier_documents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_courier_documents_shop_id'))

    op.drop_table('courier_documents')

    with op.batch_alter_table('courier_pickups', schema=None) as batch_op:
        batch_op.drop_column('cancelled_by')
        batch_op.drop_column('cancelled_at')
        batch_op.drop_column('courier_data')
