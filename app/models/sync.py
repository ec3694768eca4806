"""Keeping a shop's copy fresh: install handshakes, sync runs and their progress, returns, data exports."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Float, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdType, TenantScoped, tenant_fk, utcnow


class OAuthState(Base):
    """A one-time `state` nonce of a platform install in progress (before the shop row exists)."""

    __tablename__ = "oauth_states"

    state: Mapped[str] = mapped_column(String(64), primary_key=True)
    platform: Mapped[str] = mapped_column(String(20))
    shop_domain: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    used_at: Mapped[dt.datetime | None]


class SyncRun(TenantScoped, Base):
    """One pass over one resource of a shop (initial bulk import or reconciliation), with visible progress."""

    __tablename__ = "sync_runs"
    __table_args__ = (UniqueConstraint("shop_id", "id"), Index("ix_sync_runs_shop_status", "shop_id", "status"))

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # initial | reconcile
    resource: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | running | importing | done | failed
    remote_operation_id: Mapped[str | None] = mapped_column(String(255))
    result_url: Mapped[str | None] = mapped_column(Text)
    importer_job_id: Mapped[int | None] = mapped_column(IdType)  # the job streaming the result in, so only it resumes
    updated_since: Mapped[dt.datetime | None]
    records_total: Mapped[int | None]
    records_done: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]


class ReturnRequest(TenantScoped, Base):
    """A customer's return of (part of) an order, as the platform reports it."""

    __tablename__ = "returns"
    __table_args__ = (UniqueConstraint("shop_id", "platform_id"), tenant_fk("order_id", "orders"))

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    platform_id: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[int | None] = mapped_column(IdType)
    order_platform_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24))
    platform_updated_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class DataExport(TenantScoped, Base):
    """Everything held about one customer, gathered for a data request (GDPR art. 15)."""

    __tablename__ = "data_exports"
    __table_args__ = (UniqueConstraint("shop_id", "request_key"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    request_key: Mapped[str] = mapped_column(String(128))
    subject: Mapped[dict] = mapped_column(JSON, default=dict)
    content: Mapped[dict | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[dt.datetime | None]


class ApiRateBucket(TenantScoped, Base):
    """A shop's API rate-limit bucket as every worker calling that shop sees it (Shopify's GraphQL cost points).

    `as_of` is when `available` was true, in seconds on the clock the shop's clients share (Unix time).
    """

    __tablename__ = "api_rate_buckets"
    __table_args__ = (UniqueConstraint("shop_id", "api"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    api: Mapped[str] = mapped_column(String(32))
    available: Mapped[float] = mapped_column(Float)
    maximum: Mapped[float] = mapped_column(Float)
    restore_rate: Mapped[float] = mapped_column(Float)
    as_of: Mapped[float] = mapped_column(Float)
