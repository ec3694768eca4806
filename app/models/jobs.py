"""Durable job rows (the record of all background work) and the clock's leader lease."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdType, utcnow

JOB_STATUSES = ("queued", "running", "succeeded", "dead", "cancelled")


class Job(Base):
    """One unit of background work. Not tenant-filtered: workers claim across shops, then enter the job's shop."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_due_at", "status", "due_at", "id"),  # the claim order, so a claim reads one index range
        Index("ix_jobs_kind_status", "kind", "status"),
        Index("ix_jobs_status_lease_until", "status", "lease_until"),
    )

    id: Mapped[int] = mapped_column(IdType, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    shop_id: Mapped[int | None] = mapped_column(IdType, ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    args: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    due_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=8)
    lease_until: Mapped[dt.datetime | None]
    locked_by: Mapped[str | None] = mapped_column(String(64))
    dispatched_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.kind} {self.status} attempt {self.attempts}/{self.max_attempts}>"


class JobKindThrottle(Base):
    """Shared pacing state for a rate-limited job kind: the earliest time the next one may start."""

    __tablename__ = "job_kind_throttles"

    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    next_start_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ClockLease(Base):
    """The leader lock of the clock on SQLite (PostgreSQL uses an advisory lock instead)."""

    __tablename__ = "clock_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[dt.datetime]
