"""The job table as a queue: enqueue inside the caller's transaction, claim with a lease, settle fenced."""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, case, func, insert, or_, select, true, tuple_, update
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from app.direct_insert import DirectInsert
from app.jobs import registry
from app.models import Job, JobKindThrottle, utcnow

jobs = Job.__table__
throttles = JobKindThrottle.__table__


@dataclass(frozen=True)
class ClaimedJob:
    id: int
    kind: str
    shop_id: int | None
    args: Any
    attempts: int
    max_attempts: int
    lease_until: dt.datetime
    claimed_at: dt.datetime


def enqueue(
    session: Session,
    kind: str,
    *,
    shop_id: int | None = None,
    due_at: dt.datetime | None = None,
    dedupe_key: str | None = None,
    max_attempts: int | None = None,
    **args: Any,
) -> int | None:
    """Insert a job row in the caller's transaction; returns its id, or None if `dedupe_key` already exists.

    The executor learns of the job only after that transaction commits, so a job never runs
    against rows its creator had not yet committed.
    """
    values = _job_values(kind, shop_id, args, due_at, dedupe_key, max_attempts, _default_max_attempts(session))
    if dedupe_key is None:
        job_id = session.execute(_PLAIN_INSERT, values).scalar_one()
    else:
        job_id = session.execute(_deduplicating_insert(session), values).scalar_one_or_none()
    if job_id is not None and values["due_at"] <= utcnow():
        # Delayed jobs stay in the table until due; the clock's relay hands them over then.
        session.info.setdefault("enqueued_job_ids", []).append(job_id)
    return job_id


def enqueue_many(session: Session, kind: str, keyed_args: list[tuple[int | None, str, dict]]) -> list[int]:
    """Many `kind` jobs due now, each (shop id, dedupe key, arguments), in one INSERT ... ON CONFLICT DO NOTHING.

    For a batch of work (a 500-label print): one statement instead of hundreds. Returns the ids inserted; keys
    already present insert nothing, exactly as `enqueue` with a `dedupe_key`.
    """
    if not keyed_args:
        return []
    fallback = _default_max_attempts(session)
    rows = [_job_values(kind, shop_id, args, None, dedupe_key, None, fallback) for shop_id, dedupe_key, args in keyed_args]
    inserted = list(session.execute(_deduplicating_insert(session), rows).scalars())
    session.info.setdefault("enqueued_job_ids", []).extend(inserted)
    return inserted


def enqueue_now(dialect: Dialect, driver_connection: Any, kind: str, *, shop_id: int | None,
                default_max_attempts: int, **args: Any) -> int:
    """The webhook hot path's enqueue: a job due now, straight on a driver connection in its open transaction.

    The caller publishes the returned id to the executor once its transaction has committed.
    """
    values = _job_values(kind, shop_id, args, None, None, None, default_max_attempts)
    return _DIRECT_JOB_INSERT.run(dialect, driver_connection, values)[0]


def _job_values(kind: str, shop_id: int | None, args: dict, due_at: dt.datetime | None, dedupe_key: str | None,
                max_attempts: int | None, default_max_attempts: int) -> dict[str, Any]:
    job_kind = registry.get_kind(kind)
    job_kind.check_arguments(args)
    now = utcnow()
    return dict(kind=kind, shop_id=shop_id, args=args, status="queued", due_at=due_at or now, dedupe_key=dedupe_key,
                attempts=0, max_attempts=max_attempts or job_kind.max_attempts or default_max_attempts, created_at=now)


def _default_max_attempts(session: Session) -> int:
    settings = session.info.get("settings")
    return settings.job_max_attempts if settings is not None else 8


# Built once, values passed as parameters: a statement rebuilt with `.values(...)` for every job costs more CPU
# (SQLAlchemy computes a fresh cache key) than the insert itself, and enqueue sits on the webhook hot path.
_PLAIN_INSERT = insert(jobs).returning(jobs.c.id)
_DIRECT_JOB_INSERT = DirectInsert(_PLAIN_INSERT, ("kind", "shop_id", "args", "status", "due_at", "dedupe_key", "attempts",
                                                  "max_attempts", "created_at"))
_DEDUPING_INSERTS: dict[str, Any] = {}


def insert_for(session: Session):
    """The dialect's INSERT construct for the job table (it knows ON CONFLICT), for bulk INSERT ... SELECT."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(jobs)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(jobs)


def _deduplicating_insert(session: Session):
    """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING RETURNING id, once per dialect."""
    dialect = session.get_bind().dialect.name
    statement = _DEDUPING_INSERTS.get(dialect)
    if statement is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        statement = dialect_insert(jobs).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(jobs.c.id)
        _DEDUPING_INSERTS[dialect] = statement
    return statement


def _lease_expression(now: dt.datetime, default_lease: int, kinds: list[registry.JobKind]):
    custom = [(jobs.c.kind == k.name, now + dt.timedelta(seconds=k.lease_seconds)) for k in kinds if k.lease_seconds]
    default = now + dt.timedelta(seconds=default_lease)
    if not custom:
        return default
    return case(*custom, else_=default)


def _claim_values(worker: str, now: dt.datetime, default_lease: int):
    return dict(
        status="running",
        attempts=jobs.c.attempts + 1,
        locked_by=worker,
        lease_until=_lease_expression(now, default_lease, list(registry.all_kinds().values())),
        started_at=now,
    )


_RETURNED = (jobs.c.id, jobs.c.kind, jobs.c.shop_id, jobs.c.args, jobs.c.attempts, jobs.c.max_attempts, jobs.c.lease_until)


def _claim(conn: Connection, where, limit: int, worker: str, now: dt.datetime, lease: int) -> list[ClaimedJob]:
    candidates = (
        select(jobs.c.id)
        .where(jobs.c.status == "queued", jobs.c.due_at <= now, where)
        .order_by(jobs.c.due_at, jobs.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = conn.execute(
        update(jobs)
        .where(jobs.c.id.in_(candidates.scalar_subquery()))
        .values(**_claim_values(worker, now, lease))
        .returning(*_RETURNED)
    ).all()
    return [ClaimedJob(*row, claimed_at=now) for row in rows]


def claim_due(conn: Connection, *, worker: str, limit: int, lease_seconds: int, now: dt.datetime | None = None) -> list[ClaimedJob]:
    """Claim up to `limit` due jobs for `worker`, honouring each limited kind's concurrency and rate.

    Runs in the caller's transaction on `conn`; the caller commits.
    """
    now = now or utcnow()
    limited = registry.limited_kinds()
    unlimited_filter = jobs.c.kind.not_in([k.name for k in limited]) if limited else true()
    claimed = _claim(conn, unlimited_filter, limit, worker, now, lease_seconds)
    for kind in limited:
        room = limit - len(claimed)
        if room <= 0:
            break
        claimed += _claim_limited(conn, kind, room, worker, now, lease_seconds)
    return claimed


def _claim_limited(conn: Connection, kind: registry.JobKind, room: int, worker: str, now: dt.datetime, lease: int) -> list[ClaimedJob]:
    has_due = conn.execute(
        select(jobs.c.id).where(jobs.c.kind == kind.name, jobs.c.status == "queued", jobs.c.due_at <= now).limit(1)
    ).first()
    if has_due is None:
        return []
    next_start_at = _lock_throttle(conn, kind.name, now)
    if kind.concurrency is not None:
        running = conn.execute(
            select(func.count()).select_from(jobs).where(
                jobs.c.kind == kind.name, jobs.c.status == "running", jobs.c.lease_until > now
            )
        ).scalar_one()
        room = min(room, kind.concurrency - running)
    if kind.rate_per_second is not None:
        interval = 1.0 / kind.rate_per_second
        burst = max(1, math.floor(kind.rate_per_second))
        earliest = max(next_start_at, now - dt.timedelta(seconds=(burst - 1) * interval))
        allowed = 0 if earliest > now else int((now - earliest).total_seconds() // interval) + 1
        room = min(room, allowed, burst)
    if room <= 0:
        return []
    claimed = _claim(conn, jobs.c.kind == kind.name, room, worker, now, lease)
    if kind.rate_per_second is not None and claimed:
        conn.execute(
            update(throttles)
            .where(throttles.c.kind == kind.name)
            .values(next_start_at=earliest + dt.timedelta(seconds=len(claimed) * interval))
        )
    return claimed


def _lock_throttle(conn: Connection, kind: str, now: dt.datetime) -> dt.datetime:
    """Lock the kind's pacing row (creating it once) so concurrent claimers of this kind take turns."""
    row = conn.execute(select(throttles.c.next_start_at).where(throttles.c.kind == kind).with_for_update()).first()
    if row is None:
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        else:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        # A kind never seen before starts with a full burst available.
        conn.execute(dialect_insert(throttles).values(kind=kind, next_start_at=now - dt.timedelta(days=1)).on_conflict_do_nothing())
        row = conn.execute(select(throttles.c.next_start_at).where(throttles.c.kind == kind).with_for_update()).first()
    return row[0]


def claim_one(conn: Connection, job_id: int, *, worker: str, lease_seconds: int, now: dt.datetime | None = None) -> ClaimedJob | None:
    """Claim one named job (a broker delivered its id); None when it is not due or someone else has it."""
    now = now or utcnow()
    kind = registry.all_kinds().get(conn.execute(select(jobs.c.kind).where(jobs.c.id == job_id)).scalar_one_or_none() or "")
    if kind is not None and kind.is_limited:
        claimed = _claim_limited(conn, kind, 1, worker, now, lease_seconds)
        # _claim_limited may pick another due job of the kind; the broker message for it is then a no-op.
        return claimed[0] if claimed else None
    row = conn.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.status == "queued", jobs.c.due_at <= now)
        .values(**_claim_values(worker, now, lease_seconds))
        .returning(*_RETURNED)
    ).first()
    return ClaimedJob(*row, claimed_at=now) if row else None


def _fenced(job: ClaimedJob):
    """Only the holder of this claim may settle it: a worker whose lease expired has lost the job."""
    return and_(jobs.c.id == job.id, jobs.c.status == "running", jobs.c.attempts == job.attempts)


def mark_succeeded(conn: Connection, job: ClaimedJob, now: dt.datetime | None = None) -> bool:
    result = conn.execute(
        update(jobs).where(_fenced(job)).values(status="succeeded", finished_at=now or utcnow(), lease_until=None, last_error=None)
    )
    return result.rowcount == 1


def mark_many_succeeded(conn: Connection, claimed: list[ClaimedJob], now: dt.datetime | None = None) -> int:
    """Settle many finished jobs in one statement, each still fenced by its own claim."""
    if not claimed:
        return 0
    return conn.execute(
        update(jobs)
        .where(tuple_(jobs.c.id, jobs.c.attempts).in_([(job.id, job.attempts) for job in claimed]), jobs.c.status == "running")
        .values(status="succeeded", finished_at=now or utcnow(), lease_until=None, last_error=None)
    ).rowcount


def mark_failed(conn: Connection, job: ClaimedJob, error: str, retry_at: dt.datetime | None, now: dt.datetime | None = None) -> bool:
    """Put the job back for `retry_at`, or dead-letter it when `retry_at` is None."""
    now = now or utcnow()
    if retry_at is None:
        values = dict(status="dead", finished_at=now, lease_until=None, last_error=error)
    else:
        values = dict(status="queued", due_at=retry_at, lease_until=None, locked_by=None, dispatched_at=None, last_error=error)
    return conn.execute(update(jobs).where(_fenced(job)).values(**values)).rowcount == 1


def extend_lease(conn: Connection, job: ClaimedJob, lease_until: dt.datetime) -> bool:
    return conn.execute(update(jobs).where(_fenced(job)).values(lease_until=lease_until)).rowcount == 1


def release(conn: Connection, claimed: list[ClaimedJob]) -> int:
    """Hand back claimed jobs that were never started, without counting an attempt."""
    released = 0
    for job in claimed:
        released += conn.execute(
            update(jobs).where(_fenced(job)).values(
                status="queued", attempts=jobs.c.attempts - 1, locked_by=None, lease_until=None, started_at=None
            )
        ).rowcount
    return released


def requeue_expired_leases(conn: Connection, now: dt.datetime | None = None) -> tuple[int, int]:
    """Give jobs of crashed workers back to the queue; dead-letter those that used up their attempts.

    Returns (requeued, dead).
    """
    now = now or utcnow()
    expired = and_(jobs.c.status == "running", jobs.c.lease_until < now)
    dead = conn.execute(
        update(jobs)
        .where(expired, jobs.c.attempts >= jobs.c.max_attempts)
        .values(status="dead", finished_at=now, lease_until=None, last_error="worker lost during the last attempt (lease expired)")
    ).rowcount
    requeued = conn.execute(
        update(jobs)
        .where(expired)
        .values(status="queued", due_at=now, lease_until=None, locked_by=None, dispatched_at=None,
                last_error="worker lost (lease expired); requeued")
    ).rowcount
    return requeued, dead


def due_undispatched(conn: Connection, *, now: dt.datetime, redispatch_after: int, limit: int) -> list[int]:
    """Due jobs no broker message is known to carry: never published, or published so long ago it was lost."""
    stale = now - dt.timedelta(seconds=redispatch_after)
    candidates = (
        select(jobs.c.id)
        .where(jobs.c.status == "queued", jobs.c.due_at <= now,
               or_(jobs.c.dispatched_at.is_(None), jobs.c.dispatched_at < stale))
        .order_by(jobs.c.due_at, jobs.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(conn.execute(
        update(jobs).where(jobs.c.id.in_(candidates.scalar_subquery())).values(dispatched_at=now).returning(jobs.c.id)
    ).scalars())


def mark_dispatched(conn: Connection, job_ids: list[int], now: dt.datetime | None = None) -> None:
    if job_ids:
        conn.execute(update(jobs).where(jobs.c.id.in_(job_ids), jobs.c.status == "queued").values(dispatched_at=now or utcnow()))
