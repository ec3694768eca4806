"""What automations keep besides flows: signals (facts that happened), decision traces, API tokens, segment members.

None of these rows holds personal data (no email, phone or name): they carry ids, amounts and statuses,
so erasing a customer leaves nothing behind once the customer row (and, by cascade, these) is gone.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdType, TenantScoped, tenant_fk, utcnow


class Signal(TenantScoped, Base):
    """A fact about the shop (order placed, cart abandoned...); routed once to the flows it triggers."""

    __tablename__ = "signals"
    __table_args__ = (
        UniqueConstraint("shop_id", "dedupe_key"),
        tenant_fk("customer_id", "customers", ondelete="CASCADE"),
        Index("ix_signals_routed_at_id", "routed_at", "id"),
        Index("ix_signals_shop_customer_occurred", "shop_id", "customer_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    kind: Mapped[str] = mapped_column(String(48))
    customer_id: Mapped[int | None] = mapped_column(IdType)
    subject_type: Mapped[str | None] = mapped_column(String(16))
    subject_id: Mapped[int | None] = mapped_column(IdType)
    payload: Mapped[dict] = mapped_column(JSON, default=dict)
    dedupe_key: Mapped[str] = mapped_column(String(255))
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    routed_at: Mapped[dt.datetime | None]


class AutomationDecision(TenantScoped, Base):
    """One decision an automation took and why (which gate said what), readable per customer."""

    __tablename__ = "automation_decisions"
    __table_args__ = (
        tenant_fk("customer_id", "customers", ondelete="CASCADE"),
        tenant_fk("flow_run_id", "flow_runs", ondelete="CASCADE"),
        Index("ix_automation_decisions_shop_customer", "shop_id", "customer_id", "created_at"),
        Index("ix_automation_decisions_shop_subject", "shop_id", "subject_type", "subject_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(IdType)
    flow_run_id: Mapped[int | None] = mapped_column(IdType)
    subject_type: Mapped[str | None] = mapped_column(String(16))
    subject_id: Mapped[int | None] = mapped_column(IdType)
    step: Mapped[str | None] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(48))
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ApiToken(TenantScoped, Base):
    """A shop's bearer token for the JSON API; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("shop_id", "token_hash"),)

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]


class SegmentMember(TenantScoped, Base):
    """A customer inside an enabled segment since `entered_at`; the row goes when the customer leaves."""

    __tablename__ = "segment_members"
    __table_args__ = (
        UniqueConstraint("shop_id", "segment_id", "customer_id"),
        tenant_fk("segment_id", "segments", ondelete="CASCADE"),
        tenant_fk("customer_id", "customers", ondelete="CASCADE"),
        Index("ix_segment_members_shop_customer", "shop_id", "customer_id"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    segment_id: Mapped[int] = mapped_column(IdType)
    customer_id: Mapped[int] = mapped_column(IdType)
    entered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
