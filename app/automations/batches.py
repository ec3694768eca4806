"""Job rows for batches of due ids, built by the database in one INSERT ... SELECT (no rows travel to Python).

A clock scan hands over what is due as one job per shop per batch of ids. Doing the grouping in SQL keeps
the scan's cost at about that of reading the due index range once, however many rows are due.
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String, cast, func, literal, literal_column, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from app.jobs import registry
from app.jobs.queue import insert_for, jobs
from app.models import utcnow
from app.models.base import UTCDateTime


def enqueue_batches(session: Session, kind: str, due: Select, *, argument: str, batch: int, dedupe_prefix: str,
                    now: dt.datetime | None = None) -> int:
    """One `kind` job per shop per `batch` of the ids `due` selects (columns id, shop_id); returns jobs inserted.

    Each job is keyed `<prefix>:<shop>:<smallest id>`, so a scan repeated in the same period (a second clock)
    inserts nothing new. Same columns as `app.jobs.queue.enqueue`; the executor hears of the jobs after commit.
    """
    job_kind = registry.get_kind(kind)
    job_kind.check_arguments({argument: []})
    now = now or utcnow()
    settings = session.info.get("settings")
    attempts = job_kind.max_attempts or (settings.job_max_attempts if settings is not None else 8)
    postgres = session.get_bind().dialect.name == "postgresql"
    rows = due.subquery("due")
    # integer division on both databases (SQLAlchemy's // would go through FLOOR of a double on PostgreSQL)
    chunk = literal_column(f"(row_number() OVER (PARTITION BY due.shop_id ORDER BY due.id) - 1) / {int(batch)}", Integer)
    numbered = select(rows.c.id, rows.c.shop_id, chunk.label("chunk")).subquery("numbered")
    ids = func.json_agg(numbered.c.id) if postgres else func.json_group_array(numbered.c.id)
    args = func.json_build_object(argument, ids) if postgres else func.json_object(argument, ids)
    key = (literal(f"{dedupe_prefix}:", String) + cast(numbered.c.shop_id, String) + literal(":", String)
           + cast(func.min(numbered.c.id), String))
    values = select(literal(kind, String), numbered.c.shop_id, args, literal("queued", String),
                    literal(now, UTCDateTime()), key, literal(0, Integer), literal(attempts, Integer),
                    literal(now, UTCDateTime())).where(true()).group_by(numbered.c.shop_id, numbered.c.chunk)
    statement = insert_for(session).from_select(
        ["kind", "shop_id", "args", "status", "due_at", "dedupe_key", "attempts", "max_attempts", "created_at"], values,
    ).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(jobs.c.id)
    inserted = list(session.execute(statement).scalars())
    if inserted and now <= utcnow():
        session.info.setdefault("enqueued_job_ids", []).extend(inserted)
    return len(inserted)
