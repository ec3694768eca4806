"""The outbox and what governs it: messages, attempts, consent, preferences, suppression, push subscriptions, coupons."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import JSON, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdType, TenantScoped, tenant_fk, utcnow

MESSAGE_STATUSES = ("scheduled", "sending", "sent", "failed", "unknown", "suppressed", "cancelled")
CHANNELS = ("email", "sms", "push")


class Message(TenantScoped, Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("shop_id", "id"),
        UniqueConstraint("shop_id", "dedupe_key"),
        tenant_fk("customer_id", "customers"),
        tenant_fk("flow_run_id", "flow_runs"),
        Index("ix_messages_status_due_at", "status", "due_at"),
        # The send gates' per-recipient look-ups (frequency cap, priority) and Twilio callbacks by SID.
        Index("ix_messages_shop_channel_recipient", "shop_id", "channel", "recipient"),
        Index("ix_messages_shop_customer_channel", "shop_id", "customer_id", "channel"),
        Index("ix_messages_shop_provider_message_id", "shop_id", "provider_message_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    channel: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16), default="transactional")
    recipient: Mapped[str] = mapped_column(String(2048))
    customer_id: Mapped[int | None] = mapped_column(IdType)
    flow_run_id: Mapped[int | None] = mapped_column(IdType)
    template: Mapped[str] = mapped_column(String(128))
    locale: Mapped[str] = mapped_column(String(5), default="en")
    context: Mapped[dict] = mapped_column(JSON, default=dict)
    dedupe_key: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="scheduled")
    due_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    gate_trace: Mapped[list] = mapped_column(JSON, default=list)
    provider_message_id: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None]
    delivered_at: Mapped[dt.datetime | None]
    opened_at: Mapped[dt.datetime | None]
    clicked_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DeliveryAttempt(TenantScoped, Base):
    __tablename__ = "delivery_attempts"
    __table_args__ = (
        UniqueConstraint("shop_id", "message_id", "attempt"),
        tenant_fk("message_id", "messages", ondelete="CASCADE"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    message_id: Mapped[int] = mapped_column(IdType)
    attempt: Mapped[int]
    provider: Mapped[str] = mapped_column(String(32))
    outcome: Mapped[str] = mapped_column(String(16), default="pending")
    response: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


class Consent(TenantScoped, Base):
    """One consent decision with its proof; the newest row per customer and channel is the current state."""

    __tablename__ = "consents"
    __table_args__ = (
        tenant_fk("customer_id", "customers", ondelete="CASCADE"),
        Index("ix_consents_shop_customer_channel", "shop_id", "customer_id", "channel", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    customer_id: Mapped[int] = mapped_column(IdType)
    channel: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(32))
    form_text_version: Mapped[str | None] = mapped_column(String(64))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MessagePreference(TenantScoped, Base):
    """A customer's choice about one kind of message on one channel; the newest row per (customer, channel, kind)
    is the current choice. Marketing still needs consent on the channel: a preference only narrows it."""

    __tablename__ = "message_preferences"
    __table_args__ = (
        tenant_fk("customer_id", "customers", ondelete="CASCADE"),
        Index("ix_message_preferences_shop_customer", "shop_id", "customer_id", "channel", "kind", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    customer_id: Mapped[int] = mapped_column(IdType)
    channel: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(16))
    wanted: Mapped[bool]
    source: Mapped[str] = mapped_column(String(32))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Suppression(TenantScoped, Base):
    __tablename__ = "suppressions"
    __table_args__ = (UniqueConstraint("shop_id", "channel", "address"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    channel: Mapped[str] = mapped_column(String(8))
    address: Mapped[str] = mapped_column(String(2048))
    reason: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PushSubscription(TenantScoped, Base):
    __tablename__ = "push_subscriptions"
    __table_args__ = (
        UniqueConstraint("shop_id", "endpoint"),
        tenant_fk("customer_id", "customers", ondelete="CASCADE"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(IdType)
    visitor_id: Mapped[str | None] = mapped_column(String(64))
    endpoint: Mapped[str] = mapped_column(String(1024))
    p256dh: Mapped[str] = mapped_column(String(255))
    auth: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)


class Coupon(TenantScoped, Base):
    __tablename__ = "coupons"
    __table_args__ = (
        UniqueConstraint("shop_id", "code"),
        tenant_fk("customer_id", "customers", ondelete="CASCADE"),
        tenant_fk("cart_id", "carts"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    code: Mapped[str] = mapped_column(String(64))
    platform_id: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[int | None] = mapped_column(IdType)
    cart_id: Mapped[int | None] = mapped_column(IdType)
    percent_off: Mapped[Decimal | None]
    amount_off: Mapped[Decimal | None]
    currency: Mapped[str | None] = mapped_column(String(3))
    expires_at: Mapped[dt.datetime]
    redeemed_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
