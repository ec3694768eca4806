"""What the storefront snippet reports: visitors, their events, pending double opt-ins, push opt-ins, rate-limit counters."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdType, TenantScoped, tenant_fk, utcnow

STOREFRONT_EVENT_KINDS = ("page_view", "product_view", "add_to_cart")


class StorefrontVisitor(TenantScoped, Base):
    """A first-party anonymous visitor id, linked to a customer once they type an email or phone."""

    __tablename__ = "storefront_visitors"
    __table_args__ = (
        UniqueConstraint("shop_id", "visitor_id"),
        tenant_fk("customer_id", "customers", ondelete="CASCADE"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    visitor_id: Mapped[str] = mapped_column(String(64))
    customer_id: Mapped[int | None] = mapped_column(IdType)
    first_seen_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    contact_at: Mapped[dt.datetime | None]


class StorefrontEvent(TenantScoped, Base):
    """One page view, product view or add-to-cart, as the snippet sent it."""

    __tablename__ = "storefront_events"
    __table_args__ = (
        Index("ix_storefront_events_shop_visitor", "shop_id", "visitor_id", "occurred_at"),
        # The abandoned-browse scan's range; partial, so page views and add-to-carts pay no write for it.
        Index("ix_storefront_events_product_views", "occurred_at", sqlite_where=text("kind = 'product_view'"),
              postgresql_where=text("kind = 'product_view'")),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    # Not indexed alone (unlike TenantScoped's shop_id): ix_storefront_events_shop_visitor leads with it, and
    # every index costs each of the many inserts of `/s/events` a B-tree write.
    shop_id: Mapped[int] = mapped_column(IdType, ForeignKey("shops.id", ondelete="CASCADE"), nullable=False)
    visitor_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    url: Mapped[str | None] = mapped_column(String(2048))
    product_platform_id: Mapped[str | None] = mapped_column(String(64))
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    occurred_at: Mapped[dt.datetime]
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DoubleOptIn(TenantScoped, Base):
    """A sign-up waiting for its confirmation click; the outbox sends the link, the click records the proof.

    `status`: `unsent` (no sender registered yet, or not sent yet), `queued` (a send job exists),
    `sent`, `confirmed`.
    """

    __tablename__ = "double_opt_ins"
    __table_args__ = (
        UniqueConstraint("shop_id", "nonce"),
        tenant_fk("customer_id", "customers", ondelete="CASCADE"),
        Index("ix_double_opt_ins_status", "status", "requested_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    customer_id: Mapped[int] = mapped_column(IdType)
    # consents has no (shop_id, id) key to point a tenant foreign key at; the row's shop_id still scopes it.
    consent_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("consents.id", ondelete="SET NULL"))
    channel: Mapped[str] = mapped_column(String(8), default="email")
    nonce: Mapped[str] = mapped_column(String(32))
    form_id: Mapped[str] = mapped_column(String(64))
    form_text_version: Mapped[str] = mapped_column(String(64))
    locale: Mapped[str] = mapped_column(String(5), default="en")
    visitor_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="unsent")
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    requested_ip: Mapped[str | None] = mapped_column(String(45))
    requested_user_agent: Mapped[str | None] = mapped_column(String(512))
    confirmed_at: Mapped[dt.datetime | None]


class PushOptIn(TenantScoped, Base):
    """The consent a push subscription was given under (what the visitor agreed to, when, from where)."""

    __tablename__ = "push_opt_ins"
    __table_args__ = (
        UniqueConstraint("shop_id", "push_subscription_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    push_subscription_id: Mapped[int] = mapped_column(IdType, ForeignKey("push_subscriptions.id", ondelete="CASCADE"))
    visitor_id: Mapped[str] = mapped_column(String(64))
    form_text_version: Mapped[str] = mapped_column(String(64))
    ip_address: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    granted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]


class RateLimitCounter(Base):
    """Requests counted per key and fixed window, shared by every web process (used when Redis is not)."""

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(String(160), primary_key=True)
    window_start: Mapped[int] = mapped_column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True)
    count: Mapped[int] = mapped_column(default=0)
