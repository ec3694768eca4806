"""The inbox: a platform's webhook is stored raw, with its ingest job, in one transaction, before any parsing."""
from __future__ import annotations

import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, Callable

from app.direct_insert import DirectInsert
from app.jobs.queue import enqueue_now
from app.jobs.runner import PermanentJobError
from app.models import InboundEvent, utcnow
from connectors.errors import InvalidPayload

if TYPE_CHECKING:
    from app.runtime import Runtime

log = logging.getLogger(__name__)


_EVENT_COLUMNS = ("shop_id", "platform", "topic", "dedupe_key", "headers", "body", "status", "received_at",
                  "resource_updated_at")
_STORE_EVENT: dict[str, DirectInsert] = {}


def _store_event(dialect: str) -> DirectInsert:
    """INSERT ... ON CONFLICT (shop_id, dedupe_key) DO NOTHING RETURNING id, compiled once per dialect."""
    statement = _STORE_EVENT.get(dialect)
    if statement is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        table = InboundEvent.__table__
        statement = _STORE_EVENT[dialect] = DirectInsert(
            insert(table).on_conflict_do_nothing(index_elements=["shop_id", "dedupe_key"]).returning(table.c.id),
            _EVENT_COLUMNS)
    return statement


def accept_event(
    runtime: Runtime,
    *,
    shop_id: int,
    platform: str,
    topic: str,
    dedupe_key: str,
    headers: dict[str, str],
    body: bytes,
    ingest_job: str,
    resource_updated_at: dt.datetime | None = None,
) -> int | None:
    """Store the event and its ingest job in one transaction, then hand the job to the executor.

    Returns the event id, or None for a duplicate delivery. This is every webhook's hot path, so it runs on a
    plain connection, its two inserts straight on the driver (`DirectInsert`): an ORM session's bookkeeping,
    and then SQLAlchemy's per-statement execution, each cost more than both inserts together.
    """
    with runtime.engine.begin() as conn:
        event_id = _store_event(conn.dialect.name).returning_one(conn, dict(
            shop_id=shop_id, platform=platform, topic=topic, dedupe_key=dedupe_key, headers=headers, body=body,
            status="received", received_at=utcnow(), resource_updated_at=resource_updated_at,
        ))
        job_id = None
        if event_id is not None:
            job_id = enqueue_now(conn, ingest_job, shop_id=shop_id,
                                 default_max_attempts=runtime.settings.job_max_attempts, event_id=event_id)
    if job_id is not None:
        runtime.executor.publish([job_id])
    return event_id


# Outcomes after which a stored delivery changed nothing: unknown topic, an older state, our own write's echo.
UNCHANGED_OUTCOMES = ("ignored", "stale", "echo")


class TopicHandlers:
    """A platform's ingest: one handler per webhook topic, and the one way a stored delivery is applied."""

    def __init__(self, platform: str, shop_argument: Callable[[object, int], object] = lambda _ctx, shop_id: shop_id):
        self.platform = platform
        self._shop_argument = shop_argument  # what handlers get as the shop: its id, or the loaded row
        self._handlers: dict[str, Callable[..., str]] = {}

    def handles(self, *topics: str):
        def register(func: Callable[..., str]) -> Callable[..., str]:
            for topic in topics:
                self._handlers[topic] = func
            return func

        return register

    def ingest(self, ctx, event_id: int) -> None:
        """Apply one stored delivery; safe to run twice (newer-wins upserts, settled events are skipped).

        A body that is not JSON or not understood dead-letters this event's job and nothing else.
        """
        event = ctx.session.get(InboundEvent, event_id)
        if event is None or event.status in ("processed", "ignored"):
            return
        handler = self._handlers.get(event.topic)
        outcome = "ignored"
        if handler is not None:
            try:
                payload = json.loads(event.body)
            except ValueError as exc:
                raise PermanentJobError(f"{event.topic} body is not JSON: {exc}") from None
            try:
                outcome = handler(ctx, self._shop_argument(ctx, event.shop_id), payload, event.topic)
            except (InvalidPayload, KeyError, TypeError, ValueError) as exc:
                raise PermanentJobError(f"{event.topic} payload not understood: {type(exc).__name__}: {exc}") from None
        topic = event.topic
        event = ctx.session.get(InboundEvent, event_id)  # a redaction may have erased the event itself
        if event is not None:
            event.status = "ignored" if outcome in UNCHANGED_OUTCOMES else "processed"
            event.processed_at = utcnow()
        log.info(f"{self.platform} event ingested", extra={"topic": topic, "outcome": outcome})
