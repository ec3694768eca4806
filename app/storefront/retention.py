"""Retention of storefront events: each hour the clock queues one purge, which deletes old events in bounded batches."""
from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import Engine, delete, select

from app.clock import clock_scan, period_key
from app.jobs.queue import enqueue
from app.jobs.registry import job_kind
from app.jobs.runner import JobContext
from app.models import StorefrontEvent, utcnow

log = logging.getLogger(__name__)
events = StorefrontEvent.__table__
PURGE_KIND = "storefront.purge_events"
PURGE_EVERY_SECONDS = 3600
BATCH_ROWS = 5000
MAX_BATCHES_PER_RUN = 200  # a backlog of a million rows is worked off over a few hourly runs


def delete_old_events(engine: Engine, cutoff: dt.datetime, batch_rows: int = BATCH_ROWS,
                      max_batches: int = MAX_BATCHES_PER_RUN) -> int:
    """Delete events received before `cutoff`, oldest first, one short transaction per batch; returns how many.

    Ids grow with arrival, so the oldest events are the lowest ids: each batch reads the next `batch_rows`
    ids through the primary key and deletes those among them that are old enough. The first batch that
    holds a newer event ends the run. No index on the timestamp is needed, and none is kept up to date
    by the many inserts of `/s/events`.
    """
    deleted = 0
    for _ in range(max_batches):
        with engine.begin() as conn:
            oldest = conn.execute(select(events.c.id, events.c.received_at).order_by(events.c.id).limit(batch_rows)).all()
            old_ids = [row.id for row in oldest if row.received_at < cutoff]
            if old_ids:
                result = conn.execute(delete(events).where(events.c.id <= old_ids[-1], events.c.received_at < cutoff))
                deleted += result.rowcount
        if len(old_ids) < len(oldest) or len(oldest) < batch_rows:
            break
    return deleted


def retention_cutoff(retention_days: int, now: dt.datetime) -> dt.datetime | None:
    """Events received before this are deleted; None when retention is off (0 days: keep them all)."""
    return now - dt.timedelta(days=retention_days) if retention_days > 0 else None


@job_kind(PURGE_KIND, concurrency=1)
def purge_old_events(ctx: JobContext) -> None:
    """Delete storefront events older than STOREFRONT_EVENT_RETENTION_DAYS, committing batch by batch."""
    cutoff = retention_cutoff(ctx.settings.storefront.event_retention_days, utcnow())
    if cutoff is None:
        return
    # Its own short transactions, not the job's session: on SQLite one long delete would hold the writer
    # lock that every `/s/events` request waits for.
    deleted = delete_old_events(ctx.session.get_bind(), cutoff)
    if deleted:
        log.info("old storefront events deleted", extra={"deleted": deleted, "before": cutoff.isoformat()})


@clock_scan(PURGE_KIND, every_seconds=PURGE_EVERY_SECONDS)
def schedule_event_purge(runtime, now: dt.datetime) -> int:
    if retention_cutoff(runtime.settings.storefront.event_retention_days, now) is None:
        return 0
    with runtime.sessions.begin() as session:
        inserted = enqueue(session, PURGE_KIND, dedupe_key=period_key(PURGE_KIND, PURGE_EVERY_SECONDS, now))
    return 1 if inserted else 0
