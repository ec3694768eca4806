"""messaging: per-kind message preferences (a customer keeps shipping updates, drops promotions)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 10:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('message_preferences',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('wanted', sa.Boolean(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('ip_address', sa.String(length=45), nullable=True),
    sa.Column('user_agent', sa.String(length=512), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('shop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.ForeignKeyConstraint(['shop_id', 'customer_id'], ['customers.shop_id', 'customers.id'], name=op.f('fk_message_preferences_shop_id_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_message_preferences_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_message_preferences'))
    )
    with op.batch_alter_table('message_preferences', schema=None) as batch_op:
        batch_op.create_index('ix_message_preferences_shop_customer', ['shop_id', 'customer_id', 'channel', 'kind', 'recorded_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_message_preferences_shop_id'), ['shop_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('message_preferences', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_preferences_shop_id'))
        batch_op.drop_index('ix_message_preferences_shop_customer')

    op.drop_table('message_preferences')
