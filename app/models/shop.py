"""The shop: the tenant every other row belongs to."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.crypto import EncryptedJSON, Secret
from app.models.base import Base, IdType, TenantScoped, utcnow

SHOP_STATUSES = ("connecting", "active", "needs_reauth", "uninstalled", "disconnected")


class Shop(Base):
    __tablename__ = "shops"
    __table_args__ = (UniqueConstraint("platform", "domain"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    domain: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255), default="")
    status: Mapped[str] = mapped_column(String(20), default="connecting")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    locale: Mapped[str] = mapped_column(String(5), default="en")
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    credentials: Mapped[Secret | None] = mapped_column(EncryptedJSON(), nullable=True)
    access_token_expires_at: Mapped[dt.datetime | None]
    refresh_token_expires_at: Mapped[dt.datetime | None]
    webhook_token: Mapped[str] = mapped_column(String(64), unique=True)
    public_key: Mapped[str] = mapped_column(String(64), unique=True)
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    def __repr__(self) -> str:
        return f"<Shop {self.id} {self.platform}:{self.domain} {self.status}>"


class ShopAlert(TenantScoped, Base):
    """Something the shop owner should know and may have to act on (a disabled webhook, a revoked key…)."""

    __tablename__ = "shop_alerts"
    __table_args__ = (Index("ix_shop_alerts_shop_id_open", "shop_id", "resolved_at"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[dt.datetime | None]
