"""ready flows: product alerts (back in stock, price drop), the abandoned-browse scan's partial index

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-29 10:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_products_shop_id_id'), ['shop_id', 'id'])

    op.create_table('product_alerts',
    sa.Column('id', ID, nullable=False),
    sa.Column('product_id', ID, nullable=False),
    sa.Column('customer_id', ID, nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('reference_price', sa.Numeric(precision=14, scale=4), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('notified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('shop_id', ID, nullable=False),
    sa.ForeignKeyConstraint(['shop_id'], ['shops.id'], name=op.f('fk_product_alerts_shop_id_shops'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id', 'customer_id'], ['customers.shop_id', 'customers.id'], name=op.f('fk_product_alerts_shop_id_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['shop_id', 'product_id'], ['products.shop_id', 'products.id'], name=op.f('fk_product_alerts_shop_id_product_id_products'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_product_alerts')),
    sa.UniqueConstraint('shop_id', 'product_id', 'customer_id', 'kind', name=op.f('uq_product_alerts_shop_id_product_id_customer_id_kind'))
    )
    with op.batch_alter_table('product_alerts', schema=None) as batch_op:
        batch_op.create_index('ix_product_alerts_shop_product_status', ['shop_id', 'product_id', 'status'], unique=False)
        batch_op.create_index(batch_op.f('ix_product_alerts_shop_id'), ['shop_id'], unique=False)

    with op.batch_alter_table('storefront_events', schema=None) as batch_op:
        batch_op.create_index('ix_storefront_events_product_views', ['occurred_at'], unique=False,
                              sqlite_where=sa.text("kind = 'product_view'"), postgresql_where=sa.text("kind = 'product_view'"))


def downgrade() -> None:
    with op.batch_alter_table('storefront_events', schema=None) as batch_op:
        batch_op.drop_index('ix_storefront_events_product_views')

    with op.batch_alter_table('product_alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_product_alerts_shop_id'))
        batch_op.drop_index('ix_product_alerts_shop_product_status')

    op.drop_table('product_alerts')

    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_products_shop_id_id'), type_='unique')
