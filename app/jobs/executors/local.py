"""The `local` executor: worker processes claim due rows straight from the job table."""
from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import threading
import time
import uuid

from app.jobs.queue import ClaimedJob, claim_due, mark_many_succeeded, release, requeue_expired_leases
from app.jobs.runner import run_claimed
from app.models import utcnow

log = logging.getLogger(__name__)


class LocalExecutor:
    """Nothing to publish: workers poll the table, which is already the queue."""

    name = "local"

    def publish(self, job_ids: list[int]) -> None:
        return None

    def dispatch_due(self, now: dt.datetime) -> int:
        return 0

    def check(self) -> None:
        return None

    def close(self) -> None:
        return None


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class LocalWorker:
    """Claims a small batch of due jobs, runs them one by one, sleeps when there is nothing due."""

    SWEEP_EVERY_SECONDS = 15.0

    def __init__(self, runtime, *, batch_size: int = 8, name: str | None = None):
        self.runtime = runtime
        self.settings = runtime.settings
        self.batch_size = batch_size
        self.name = name or worker_name()
        self.stopping = threading.Event()
        self._last_sweep = 0.0
        self._finished: list[ClaimedJob] = []  # succeeded, settled with the next claim

    def install_signal_handlers(self) -> None:
        def _stop(signum, _frame):
            log.info("worker stopping after the current job", extra={"signal": signum})
            self.stopping.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

    def run(self, *, max_jobs: int | None = None, exit_when_idle: bool = False) -> int:
        """Work until stopped (or until `max_jobs` ran / the queue is empty); returns jobs run."""
        log.info("worker started", extra={"worker": self.name, "executor": "local"})
        done = 0
        while not self.stopping.is_set():
            self._sweep_now_and_then()
            batch = self._settle_and_claim(self.batch_size if max_jobs is None else min(self.batch_size, max_jobs - done))
            if not batch:
                if exit_when_idle:
                    break
                self.stopping.wait(self.settings.job_poll_interval)
                continue
            done += self._run_batch(batch)
            if max_jobs is not None and done >= max_jobs:
                break
        self._settle_and_claim(0)
        log.info("worker stopped", extra={"worker": self.name, "jobs_run": done})
        return done

    def _settle_and_claim(self, limit: int) -> list[ClaimedJob]:
        """One transaction settles the jobs just finished and claims the next ones."""
        with self.runtime.engine.begin() as conn:
            mark_many_succeeded(conn, self._finished)
            self._finished = []
            if limit <= 0:
                return []
            return claim_due(conn, worker=self.name, limit=limit, lease_seconds=self.settings.job_lease_seconds)

    def _run_batch(self, batch: list[ClaimedJob]) -> int:
        run = 0
        for index, job in enumerate(batch):
            held_for = (utcnow() - job.claimed_at).total_seconds()
            if self.stopping.is_set() or held_for > self.settings.job_lease_seconds / 2:
                # Jobs held too long in this worker's hand go back before their lease could expire.
                with self.runtime.engine.begin() as conn:
                    release(conn, batch[index:])
                break
            outcome = run_claimed(self.runtime.engine, self.runtime.sessions, self.settings, job, defer_success=True)
            if outcome.status == "succeeded_pending":
                self._finished.append(job)
            run += 1
        return run

    def _sweep_now_and_then(self) -> None:
        if time.monotonic() - self._last_sweep < min(self.SWEEP_EVERY_SECONDS, self.settings.job_lease_seconds / 2):
            return
        self._last_sweep = time.monotonic()
        with self.runtime.engine.begin() as conn:
            requeued, dead = requeue_expired_leases(conn)
        if requeued or dead:
            log.warning("requeued jobs of lost workers", extra={"requeued": requeued, "dead": dead})
