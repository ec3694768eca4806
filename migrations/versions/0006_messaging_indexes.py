"""messaging: indexes for the send gates' per-recipient look-ups and Twilio callbacks

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 08:45:00
"""
from alembic import op


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.create_index('ix_messages_shop_channel_recipient', ['shop_id', 'channel', 'recipient'], unique=False)
        batch_op.create_index('ix_messages_shop_customer_channel', ['shop_id', 'customer_id', 'channel'], unique=False)
        batch_op.create_index('ix_messages_shop_provider_message_id', ['shop_id', 'provider_message_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_shop_provider_message_id')
        batch_op.drop_index('ix_messages_shop_customer_channel')
        batch_op.drop_index('ix_messages_shop_channel_recipient')
