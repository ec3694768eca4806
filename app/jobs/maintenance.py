"""Job kinds that keep the service itself healthy."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import delete

from app.jobs.queue import jobs
from app.jobs.registry import job_kind
from app.models import utcnow


@job_kind("noop")
def noop(ctx) -> None:
    """Does nothing; used to measure the executor and to check a deployment end to end."""


@job_kind("jobs.purge_finished", concurrency=1)
def purge_finished_jobs(ctx, older_than_days: int = 14) -> None:
    """Delete succeeded and cancelled job rows older than the retention; dead ones stay for inspection."""
    cutoff = utcnow() - dt.timedelta(days=older_than_days)
    ctx.session.execute(
        delete(jobs).where(jobs.c.status.in_(["succeeded", "cancelled"]), jobs.c.finished_at < cutoff)
    )
