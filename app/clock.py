"""The clock process: periodic scans that only insert or hand over job rows, run by one leader at a time."""
from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import threading
import uuid
import zlib
from dataclasses import dataclass
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Connection, insert, select, update

from app.jobs.queue import enqueue, requeue_expired_leases
from app.models import ClockLease, utcnow

log = logging.getLogger(__name__)
clock_leases = ClockLease.__table__

LEADER_LOCK_NAME = "clock"


@dataclass(frozen=True)
class Scan:
    """A periodic scan; `run(runtime, now)` returns how many jobs it inserted or handed over."""

    id: str
    every_seconds: int
    run: Callable[..., int]


_scans: dict[str, Scan] = {}


def clock_scan(scan_id: str, *, every_seconds: int) -> Callable:
    def register(func: Callable[..., int]) -> Callable[..., int]:
        _scans[scan_id] = Scan(scan_id, every_seconds, func)
        return func

    return register


def all_scans() -> list[Scan]:
    return sorted(_scans.values(), key=lambda scan: scan.id)


def period_key(scan_id: str, every_seconds: int, now: dt.datetime) -> str:
    """The dedupe key of a scan's period, so a scan re-run within its period inserts nothing new."""
    return f"{scan_id}:{int(now.timestamp()) // every_seconds}"


@clock_scan("jobs.sweep_leases", every_seconds=10)
def sweep_expired_leases(runtime, now: dt.datetime) -> int:
    with runtime.engine.begin() as conn:
        requeued, dead = requeue_expired_leases(conn, now)
    if requeued or dead:
        log.warning("requeued jobs of lost workers", extra={"requeued": requeued, "dead": dead})
    return requeued


@clock_scan("jobs.relay", every_seconds=1)
def relay_due_jobs(runtime, now: dt.datetime) -> int:
    """Hand due jobs to the executor's broker: delayed jobs that came due and messages that were lost."""
    return runtime.executor.dispatch_due(now)


@clock_scan("jobs.purge_finished", every_seconds=3600)
def schedule_job_purge(runtime, now: dt.datetime) -> int:
    with runtime.sessions.begin() as session:
        inserted = enqueue(session, "jobs.purge_finished", dedupe_key=period_key("jobs.purge_finished", 3600, now))
    return 1 if inserted else 0


class LeaderLock:
    """Leadership of the clock: a PostgreSQL session advisory lock, or a lease row on SQLite."""

    def __init__(self, engine, lease_seconds: int, holder: str | None = None):
        self.engine = engine
        self.lease_seconds = lease_seconds
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._pg_connection: Connection | None = None
        # Advisory locks are per cluster, not per database: the key names the database, so two installations
        # (or staging and production) sharing one PostgreSQL server each keep their own clock running.
        self._pg_key = zlib.crc32(f"companion-clock-leader:{engine.url.database}".encode())

    @property
    def uses_advisory_lock(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def try_acquire(self) -> bool:
        if self.uses_advisory_lock:
            return self._try_advisory()
        return self._try_lease()

    def renew(self) -> bool:
        if self.uses_advisory_lock:
            try:
                self._pg_connection.exec_driver_sql("SELECT 1")
                return True
            except Exception:  # noqa: BLE001 - a broken session has lost the lock
                self._drop_pg_connection()
                return False
        return self._try_lease()

    def release(self) -> None:
        if self.uses_advisory_lock:
            if self._pg_connection is not None:
                try:
                    self._pg_connection.exec_driver_sql(f"SELECT pg_advisory_unlock({self._pg_key})")
                finally:
                    self._drop_pg_connection()
            return
        with self.engine.begin() as conn:
            conn.execute(update(clock_leases).where(clock_leases.c.name == LEADER_LOCK_NAME, clock_leases.c.holder == self.holder)
                         .values(expires_at=utcnow() - dt.timedelta(seconds=1)))

    def _try_advisory(self) -> bool:
        if self._pg_connection is None:
            self._pg_connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            got = self._pg_connection.exec_driver_sql(f"SELECT pg_try_advisory_lock({self._pg_key})").scalar()
        except Exception:  # noqa: BLE001
            self._drop_pg_connection()
            return False
        return bool(got)

    def _drop_pg_connection(self) -> None:
        if self._pg_connection is not None:
            try:
                self._pg_connection.close()
            except Exception:  # noqa: BLE001
                pass
            self._pg_connection = None

    def _try_lease(self) -> bool:
        now = utcnow()
        expires = now + dt.timedelta(seconds=self.lease_seconds)
        with self.engine.begin() as conn:
            row = conn.execute(select(clock_leases.c.holder, clock_leases.c.expires_at)
                               .where(clock_leases.c.name == LEADER_LOCK_NAME)).first()
            if row is None:
                conn.execute(insert(clock_leases).values(name=LEADER_LOCK_NAME, holder=self.holder, expires_at=expires))
                return True
            if row.holder == self.holder or row.expires_at < now:
                conn.execute(update(clock_leases).where(clock_leases.c.name == LEADER_LOCK_NAME)
                             .values(holder=self.holder, expires_at=expires))
                return True
            return False


class Clock:
    """Runs every registered scan on its interval while this process leads; stands by otherwise."""

    def __init__(self, runtime, scans: list[Scan] | None = None):
        self.runtime = runtime
        self.scans = scans if scans is not None else all_scans()
        self.leader = LeaderLock(runtime.engine, runtime.settings.clock_lock_seconds)
        self.is_leader = False
        self.stopping = threading.Event()
        self.scheduler = BackgroundScheduler(timezone=dt.timezone.utc, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": 30})
        for scan in self.scans:
            self.scheduler.add_job(self._run_scan, "interval", seconds=scan.every_seconds, id=scan.id,
                                   args=[scan], replace_existing=True)

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())

    def run(self) -> None:
        self.scheduler.start(paused=True)
        check_every = max(1.0, self.runtime.settings.clock_lock_seconds / 3)
        log.info("clock started", extra={"holder": self.leader.holder, "scans": [s.id for s in self.scans]})
        try:
            while not self.stopping.is_set():
                self._hold_or_seek_leadership()
                self.stopping.wait(check_every)
        finally:
            self.scheduler.shutdown(wait=True)
            if self.is_leader:
                self.leader.release()
            log.info("clock stopped", extra={"holder": self.leader.holder})

    def _hold_or_seek_leadership(self) -> None:
        try:
            held = self.leader.renew() if self.is_leader else self.leader.try_acquire()
        except Exception:  # noqa: BLE001 - a database hiccup means we cannot prove leadership
            log.warning("leader lock check failed", exc_info=True)
            held = False
        if held and not self.is_leader:
            self.is_leader = True
            log.info("clock is the leader; scans running", extra={"holder": self.leader.holder})
            self.scheduler.resume()
        elif not held and self.is_leader:
            self.is_leader = False
            self.scheduler.pause()
            log.warning("clock lost leadership; standing by", extra={"holder": self.leader.holder})
        elif not held:
            log.info("another clock leads; standing by", extra={"holder": self.leader.holder})

    def _run_scan(self, scan: Scan) -> None:
        if not self.is_leader:
            return
        now = utcnow()
        try:
            count = scan.run(self.runtime, now)
        except Exception:  # noqa: BLE001 - one failing scan must not stop the others
            log.exception("scan failed", extra={"scan": scan.id})
            return
        log.log(logging.INFO if count else logging.DEBUG, "scan finished",
                extra={"scan": scan.id, "jobs": count, "holder": self.leader.holder})
