"""The inbox: a platform's webhook is stored raw, with its ingest job, in one transaction, before any parsing."""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Callable

from sqlalchemy import Engine, bindparam, func, insert as sa_insert, literal_column, select

from app.db import driver_autocommit, driver_transaction
from app.direct_insert import DirectInsert
from app.group_commit import GroupCommit
from app.jobs import registry
from app.jobs.queue import enqueue_now
from app.jobs.runner import PermanentJobError
from app.models import InboundEvent, Job, utcnow
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


def _store_event_with_job() -> DirectInsert:
    """PostgreSQL: the event and its job in ONE statement (the job inserted from the event insert's RETURNING).

    Run in autocommit, that is one round trip and one commit per webhook instead of BEGIN, two INSERTs and
    COMMIT; PostgreSQL commits a statement atomically, so the event never exists without its job. A repeated
    delivery inserts no event, hence no job, and returns no row.
    """
    from sqlalchemy.dialects.postgresql import insert

    events, jobs = InboundEvent.__table__, Job.__table__
    event = (insert(events).values({name: bindparam(name, type_=events.c[name].type) for name in _EVENT_COLUMNS})
             .on_conflict_do_nothing(index_elements=["shop_id", "dedupe_key"]).returning(events.c.id).cte("event"))
    job = select(bindparam("ingest_job", type_=jobs.c.kind.type), bindparam("shop_id", type_=jobs.c.shop_id.type),
                 func.json_build_object(literal_column("'event_id'"), event.c.id), literal_column("'queued'"), bindparam("received_at", type_=jobs.c.due_at.type),
                 literal_column("0"), bindparam("max_attempts", type_=jobs.c.max_attempts.type),
                 bindparam("received_at", type_=jobs.c.created_at.type)).select_from(event)
    statement = (sa_insert(jobs).from_select(["kind", "shop_id", "args", "status", "due_at", "attempts", "max_attempts",
                                              "created_at"], job)
                 .returning(select(event.c.id).scalar_subquery(), jobs.c.id))
    return DirectInsert(statement, (*_EVENT_COLUMNS, "ingest_job", "max_attempts"))


_STORE_EVENT_WITH_JOB = _store_event_with_job()


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

    Returns the event id, or None for a duplicate delivery; the caller answers only after its own commit. This
    is every webhook's hot path: its SQL runs straight on a pooled driver connection (`DirectInsert`,
    `driver_transaction`), since an ORM session's bookkeeping, then SQLAlchemy's connection and execution
    machinery, each cost more than the inserts themselves; and deliveries arriving together in one process
    share a transaction (`GroupCommit`).
    """
    kind = registry.get_kind(ingest_job)
    kind.check_arguments({"event_id": 0})
    delivery = dict(shop_id=shop_id, platform=platform, topic=topic, dedupe_key=dedupe_key, headers=headers,
                    body=body, status="received", received_at=utcnow(), resource_updated_at=resource_updated_at,
                    ingest_job=ingest_job, max_attempts=kind.max_attempts or runtime.settings.job_max_attempts)
    event_id, job_id = _writer_for(runtime.engine).submit(delivery)
    if job_id is not None:
        runtime.executor.publish([job_id])
    return event_id


class _InboxWriter:
    """Stores deliveries for one database: on SQLite, the ones arriving together in one transaction
    (`GroupCommit`: SQLite has one writer at a time anyway); on PostgreSQL, each in one autocommit statement."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.dialect = engine.dialect
        self.group = GroupCommit(self._write_together, self._write_alone)

    def submit(self, delivery: dict) -> tuple[int | None, int | None]:
        if self.dialect.name == "postgresql":
            # PostgreSQL takes concurrent writers and already flushes their commits together; queueing them
            # here behind one another only lost throughput (bench/webhooks.py --postgres).
            return self._write_alone(delivery)
        return self.group.submit(delivery)

    def _write_alone(self, delivery: dict) -> tuple[int | None, int | None]:
        if self.dialect.name == "postgresql":
            with driver_autocommit(self.engine) as driver:  # one statement: one round trip, one commit
                return self._store(driver, delivery)
        return self._write_together([delivery])[0]

    def _write_together(self, deliveries: list[dict]) -> list[tuple[int | None, int | None]]:
        with driver_transaction(self.engine) as driver:
            return [self._store(driver, delivery) for delivery in deliveries]

    def _store(self, driver, delivery: dict) -> tuple[int | None, int | None]:
        """(event id, job id), or (None, None) for a delivery already held."""
        if self.dialect.name == "postgresql":
            row = _STORE_EVENT_WITH_JOB.run(self.dialect, driver, delivery)
            return (row[0], row[1]) if row is not None else (None, None)
        row = _store_event(self.dialect.name).run(self.dialect, driver, delivery)
        if row is None:
            return None, None
        job_id = enqueue_now(self.dialect, driver, delivery["ingest_job"], shop_id=delivery["shop_id"],
                             default_max_attempts=delivery["max_attempts"], event_id=row[0])
        return row[0], job_id


_WRITERS: "weakref.WeakKeyDictionary[Engine, _InboxWriter]" = weakref.WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()


def _writer_for(engine: Engine) -> _InboxWriter:
    writer = _WRITERS.get(engine)
    if writer is None:
        with _WRITERS_LOCK:
            writer = _WRITERS.get(engine)
            if writer is None:
                writer = _WRITERS[engine] = _InboxWriter(engine)
    return writer


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
