"""Running one claimed job: enter its shop, call its function, settle it fenced, retry or dead-letter."""
from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import threading
import time
import traceback
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.jobs import registry
from app.jobs.backoff import retry_delay
from app.jobs.queue import ClaimedJob, extend_lease, mark_failed, mark_succeeded
from app.logs import job_log_context
from app.metrics import JOB_RUNS
from app.models import utcnow
from app.tenancy import shop_context

log = logging.getLogger(__name__)


class RetryLater(Exception):
    """Raised by a job that knows when it may succeed (a provider's Retry-After)."""

    def __init__(self, seconds: float, reason: str = ""):
        super().__init__(reason or f"retry in {seconds:.0f}s")
        self.seconds = seconds


class PermanentJobError(Exception):
    """Raised by a job that will never succeed with these arguments: dead-letter it now."""


@dataclass
class JobContext:
    """What a job function gets besides its ids: a session in the job's shop, and facts about the attempt.

    Writes through `session` commit together with the job's success. A job that calls out over HTTP
    should do so before touching `session`, or commit its own steps through `sessions`: on SQLite an
    open write transaction holds the one writer lock for its whole length.
    """

    session: Session
    job_id: int
    attempt: int
    max_attempts: int
    shop_id: int | None
    settings: Settings
    sessions: sessionmaker[Session] | None = None  # for work committed in short steps of its own (long syncs)
    started_at: dt.datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded | succeeded_pending (caller settles it) | retry | dead | lost
    error: str | None = None


def run_claimed(engine: Engine, sessions: sessionmaker[Session], settings: Settings, job: ClaimedJob,
                *, defer_success: bool = False) -> Outcome:
    """Run a job this worker has claimed and settle it; the job's own writes commit with its success.

    With `defer_success`, a job that wrote nothing through its session is reported as "succeeded_pending":
    the caller settles it later together with others (one transaction for many small jobs). Should the
    worker die before that, the job runs again, which every job kind must tolerate anyway.
    """
    keeper = lease_keeper(engine, settings)
    with job_log_context(job.id, job.kind):
        keeper.watch(job)
        try:
            outcome = _run(sessions, settings, job, defer_success)
        finally:
            keeper.unwatch(job)
    JOB_RUNS.inc(kind=job.kind, outcome="succeeded" if outcome.status == "succeeded_pending" else outcome.status)
    if outcome.status in ("succeeded", "succeeded_pending"):
        log.debug("job succeeded", extra={"kind": job.kind, "attempt": job.attempts})
    else:
        log.warning("job %s", outcome.status, extra={"kind": job.kind, "attempt": job.attempts, "error": outcome.error})
    return outcome


def _run(sessions: sessionmaker[Session], settings: Settings, job: ClaimedJob, defer_success: bool) -> Outcome:
    try:
        kind = registry.get_kind(job.kind)
        kind.check_arguments(job.args)
    except (registry.UnknownJobKind, registry.BadJobArguments) as exc:
        return _settle_failure(sessions, settings, job, str(exc), permanent=True)

    session = sessions()
    try:
        with shop_context(job.shop_id) if job.shop_id is not None else contextlib.nullcontext():
            ctx = JobContext(session, job.id, job.attempts, job.max_attempts, job.shop_id, settings, sessions)
            kind.func(ctx, **job.args)
            session.flush()
            if defer_success and not session.in_transaction():
                return Outcome("succeeded_pending")
            if not mark_succeeded(session.connection(), job):
                session.rollback()
                return Outcome("lost", "lease lost to another worker; this attempt's writes were rolled back")
            session.commit()
            return Outcome("succeeded")
    except RetryLater as exc:
        session.rollback()
        return _settle_failure(sessions, settings, job, str(exc), delay=exc.seconds)
    except PermanentJobError as exc:
        session.rollback()
        return _settle_failure(sessions, settings, job, f"{type(exc).__name__}: {exc}", permanent=True)
    except Exception as exc:  # noqa: BLE001 - any failure of job code is recorded on the job row
        session.rollback()
        error = f"{type(exc).__name__}: {exc}\n{_short_traceback()}"
        return _settle_failure(sessions, settings, job, error)
    finally:
        session.close()


def _settle_failure(
    sessions: sessionmaker[Session],
    settings: Settings,
    job: ClaimedJob,
    error: str,
    *,
    permanent: bool = False,
    delay: float | None = None,
) -> Outcome:
    now = utcnow()
    if permanent or job.attempts >= job.max_attempts:
        retry_at = None
    else:
        seconds = delay if delay is not None else retry_delay(job.attempts, settings.job_backoff_base, settings.job_backoff_max)
        retry_at = now + dt.timedelta(seconds=seconds)
    with sessions.begin() as session:
        settled = mark_failed(session.connection(), job, error[:4000], retry_at, now)
    if not settled:
        return Outcome("lost", error)
    return Outcome("retry" if retry_at else "dead", error)


def _short_traceback(limit: int = 6) -> str:
    return "".join(traceback.format_exc(limit=-limit).splitlines(keepends=True)[-2 * limit:])


class LeaseKeeper:
    """One thread per process that extends the lease of the job running now, so only a dead worker's job is taken over."""

    TICK_SECONDS = 1.0

    def __init__(self, engine: Engine, settings: Settings):
        self._engine = engine
        self._default_lease = settings.job_lease_seconds
        self._lock = threading.Lock()
        self._current: tuple[ClaimedJob, float, dt.datetime] | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lease-keeper", daemon=True)
        self._thread.start()

    def _lease_of(self, job: ClaimedJob) -> float:
        kind = registry.all_kinds().get(job.kind)
        return kind.lease_seconds if kind and kind.lease_seconds else self._default_lease

    def watch(self, job: ClaimedJob) -> None:
        with self._lock:
            self._current = (job, self._lease_of(job), job.lease_until)

    def unwatch(self, job: ClaimedJob) -> None:
        with self._lock:
            if self._current is not None and self._current[0] is job:
                self._current = None

    def stop(self) -> None:
        self._stopped.set()

    def _beat(self) -> None:
        while not self._stopped.wait(self.TICK_SECONDS):
            with self._lock:
                current = self._current
            if current is None:
                continue
            job, lease, lease_until = current
            now = utcnow()
            if (lease_until - now).total_seconds() > lease * 2 / 3:
                continue
            new_until = now + dt.timedelta(seconds=lease)
            try:
                with self._engine.begin() as conn:
                    extended = extend_lease(conn, job, new_until)
            except Exception:  # noqa: BLE001 - a missed beat only shortens the lease
                log.warning("could not extend lease", exc_info=True)
                continue
            with self._lock:
                if self._current is not None and self._current[0] is job:
                    self._current = (job, lease, new_until) if extended else None


_keepers: dict[tuple[int, int], LeaseKeeper] = {}
_keepers_lock = threading.Lock()


def lease_keeper(engine: Engine, settings: Settings) -> LeaseKeeper:
    """The process's lease keeper for this engine (one per process: a forked child builds its own)."""
    key = (id(engine), os.getpid())
    with _keepers_lock:
        keeper = _keepers.get(key)
        if keeper is None:
            keeper = _keepers[key] = LeaseKeeper(engine, settings)
        return keeper


def stop_lease_keeper(engine: Engine) -> None:
    with _keepers_lock:
        keeper = _keepers.pop((id(engine), os.getpid()), None)
    if keeper is not None:
        keeper.stop()
