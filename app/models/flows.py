"""Automation flows, their versions and runs, and the segments and tags flows act on."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, String, Text, UniqueConstraint, Index, false
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdType, TenantScoped, tenant_fk, utcnow


class Flow(TenantScoped, Base):
    __tablename__ = "flows"
    __table_args__ = (UniqueConstraint("shop_id", "id"), UniqueConstraint("shop_id", "name"))

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    trigger: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict] = mapped_column(JSON, default=dict)
    version: Mapped[int] = mapped_column(default=1)
    enabled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class FlowVersion(TenantScoped, Base):
    """Every published definition, so runs in flight finish on the version they started."""

    __tablename__ = "flow_versions"
    __table_args__ = (UniqueConstraint("shop_id", "flow_id", "version"), tenant_fk("flow_id", "flows", ondelete="CASCADE"))

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    flow_id: Mapped[int] = mapped_column(IdType)
    version: Mapped[int]
    definition: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class FlowRun(TenantScoped, Base):
    __tablename__ = "flow_runs"
    __table_args__ = (
        UniqueConstraint("shop_id", "id"),
        UniqueConstraint("shop_id", "flow_id", "customer_id", "trigger_key"),
        tenant_fk("flow_id", "flows", ondelete="CASCADE"),
        tenant_fk("customer_id", "customers", ondelete="CASCADE"),
        Index("ix_flow_runs_state_due_at", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    flow_id: Mapped[int] = mapped_column(IdType)
    flow_version: Mapped[int]
    customer_id: Mapped[int] = mapped_column(IdType)
    trigger_key: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16), default="waiting")
    next_step: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[dt.datetime | None]
    context: Mapped[dict] = mapped_column(JSON, default=dict)
    exit_reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None]


class Segment(TenantScoped, Base):
    """A dynamic segment: a definition (app.automations.segments) and, when enabled, its stored membership."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("shop_id", "name"), UniqueConstraint("shop_id", "id"))

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    definition: Mapped[dict] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    version: Mapped[int] = mapped_column(default=1, server_default="1")
    member_count: Mapped[int] = mapped_column(default=0, server_default="0")
    # None until the first refresh of this version: that one records who is in without announcing entries
    refreshed_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(default=utcnow, onupdate=utcnow)


class Tag(TenantScoped, Base):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("shop_id", "id"), UniqueConstraint("shop_id", "name"))

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))


class CustomerTag(TenantScoped, Base):
    __tablename__ = "customer_tags"
    __table_args__ = (
        UniqueConstraint("shop_id", "customer_id", "tag_id"),
        tenant_fk("customer_id", "customers", ondelete="CASCADE"),
        tenant_fk("tag_id", "tags", ondelete="CASCADE"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    customer_id: Mapped[int] = mapped_column(IdType)
    tag_id: Mapped[int] = mapped_column(IdType)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
