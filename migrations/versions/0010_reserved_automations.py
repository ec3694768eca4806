"""segments: enabled, version, stored member count and refresh time; segment_members

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29 10:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('enabled', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('version', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('member_count', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('refreshed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_segments_shop_id_id'), ['shop_id', 'id'])

    op.create_table('segment_members',
    sa.Column('id', ID, nullable=False),
    sa.Column('segment_id', ID, nullable=False),
    sa.Column('customer_id', ID, nullable=False),
    sa.Column('entered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('shop_id', ID, nullable=False),
    sa.ForeignKeyConstraint(['shop_id', 'customer_id'], ['customers.shop_id', 'customers.id'], name=op.f('fk_segment_members_shop_id_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id', 'segment_id'], ['segments.shop_id', 'segments.id'], name=op.f('fk_segment_members_shop_id_segment_id_segments'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_segment_members_shop_id_shops'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_segment_members')),
    sa.UniqueConstraint('shop_id', 'segment_id', 'customer_id', name=op.f('uq_segment_members_shop_id_segment_id_customer_id'))
    )
    with op.batch_alter_table('segment_members', schema=None) as batch_op:
        batch_op.create_index('ix_segment_members_shop_customer', ['shop_id', 'customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_segment_members_shop_id'), ['shop_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('segment_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_segment_members_shop_id'))
        batch_op.drop_index('ix_segment_members_shop_customer')

    op.drop_table('segment_members')
    with op.batch_alter_table('segments', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_segments_shop_id_id'), type_='unique')
        batch_op.drop_column('updated_at')
        batch_op.drop_column('refreshed_at')
        batch_op.drop_column('member_count')
        batch_op.drop_column('version')
        batch_op.drop_column('enabled')
