"""Inbound platform events: the raw webhook, kept before anything is made of it."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdType, TenantScoped, utcnow


class InboundEvent(TenantScoped, Base):
    __tablename__ = "inbound_events"
    __table_args__ = (UniqueConstraint("shop_id", "dedupe_key"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    # Not indexed alone (unlike TenantScoped's shop_id): the unique (shop_id, dedupe_key) index leads with it,
    # and every index is one more page each webhook's commit writes.
    shop_id: Mapped[int] = mapped_column(IdType, ForeignKey("shops.id", ondelete="CASCADE"), nullable=False)
    platform: Mapped[str] = mapped_column(String(20))
    topic: Mapped[str] = mapped_column(String(64))
    dedupe_key: Mapped[str] = mapped_column(String(255))
    headers: Mapped[dict] = mapped_column(JSON, default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(16), default="received")
    resource_updated_at: Mapped[dt.datetime | None]
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[dt.datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
