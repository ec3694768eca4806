"""The inbox: a platform's webhook is stored raw, with its ingest job, in one transaction, before any parsing."""
from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from app.jobs.queue import enqueue
from app.models import InboundEvent, utcnow


_STORE_STATEMENTS: dict[str, object] = {}


def _store_statement(session: Session):
    """INSERT ... ON CONFLICT (shop_id, dedupe_key) DO NOTHING RETURNING id, built once per dialect.

    The values travel as parameters: building `.values(...)` anew for every webhook cost more CPU than the
    database work itself (a fresh statement whose cache key SQLAlchemy must compute each time).
    """
    dialect = session.get_bind().dialect.name
    statement = _STORE_STATEMENTS.get(dialect)
    if statement is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        table = InboundEvent.__table__
        statement = insert(table).on_conflict_do_nothing(index_elements=["shop_id", "dedupe_key"]).returning(table.c.id)
        _STORE_STATEMENTS[dialect] = statement
    return statement


def accept_event(
    session: Session,
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
    """Store the event and queue its ingest; returns the event id, or None for a duplicate delivery."""
    event_id = session.execute(_store_statement(session), dict(
        shop_id=shop_id, platform=platform, topic=topic, dedupe_key=dedupe_key, headers=headers, body=body,
        status="received", received_at=utcnow(), resource_updated_at=resource_updated_at,
    )).scalar_one_or_none()
    if event_id is not None:
        enqueue(session, ingest_job, shop_id=shop_id, event_id=event_id)
    return event_id
