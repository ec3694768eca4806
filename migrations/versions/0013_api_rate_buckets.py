"""api rate buckets: a shop's Shopify cost bucket shared by every worker

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-29 11:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_rate_buckets',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('api', sa.String(length=32), nullable=False),
    sa.Column('available', sa.Float(), nullable=False),
    sa.Column('maximum', sa.Float(), nullable=False),
    sa.Column('restore_rate', sa.Float(), nullable=False),
    sa.Column('as_of', sa.Float(), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_api_rate_buckets_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_rate_buckets')),
    sa.UniqueConstraint('shop_id', 'api', name=op.f('uq_api_rate_buckets_shop_id_api'))
    )
    with op.batch_alter_table('api_rate_buckets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_rate_buckets_shop_id'), ['shop_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('api_rate_buckets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_rate_buckets_shop_id'))

    op.drop_table('api_rate_buckets')
