"""The `celery` executor: Celery workers on Redis or RabbitMQ receive job ids, never payloads or delays.

Start workers with `python -m app worker` (which runs `celery worker` for this app) when
JOB_EXECUTOR=celery. A job's delay lives in its `due_at`; the clock's relay publishes it once due.
"""
from __future__ import annotations

import datetime as dt
import logging

from celery import Celery
from celery.signals import worker_process_init
from sqlalchemy import Engine, update

from app.config import Settings
from app.jobs.queue import claim_one, due_undispatched, jobs, mark_dispatched
from app.jobs.runner import run_claimed
from app.models import utcnow

log = logging.getLogger(__name__)

TASK_NAME = "companion.run_job"
_worker_runtime = None


def celery_app_for(settings: Settings) -> Celery:
    """A Celery app bound to this configuration's broker.

    One app per executor, not a module-level singleton: Celery keeps a connection pool per app,
    so an app reconfigured to another broker would go on publishing to the first one.
    """
    app = Celery("companion", set_as_current=False)
    app.conf.update(
        broker_url=settings.broker_url,
        task_default_queue=settings.celery_queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # A message is redelivered if not acked within this time; our own lease does the real work.
        broker_transport_options={"visibility_timeout": max(3600, settings.job_lease_seconds * 2)},
    )
    app.task(name=TASK_NAME, ignore_result=True)(run_job)
    return app


def _runtime():
    """The worker process's own wiring, built on first use after the prefork."""
    global _worker_runtime
    if _worker_runtime is None:
        from app.jobs.catalog import load_job_kinds
        from app.runtime import build_runtime

        load_job_kinds()
        _worker_runtime = build_runtime(Settings.from_env())
    return _worker_runtime


@worker_process_init.connect
def _fresh_connections_after_fork(**_kwargs):
    global _worker_runtime
    if _worker_runtime is not None:
        _worker_runtime.engine.dispose(close=False)


def run_job(job_id: int) -> str:
    """Claim the named job if it is still due and unclaimed, then run it; duplicates are no-ops."""
    from app.jobs.executors.local import worker_name

    runtime = _runtime()
    with runtime.engine.begin() as conn:
        claimed = claim_one(conn, int(job_id), worker=f"celery:{worker_name()}", lease_seconds=runtime.settings.job_lease_seconds)
    if claimed is None:
        return "skipped"
    return run_claimed(runtime.engine, runtime.sessions, runtime.settings, claimed).status


class CeleryExecutor:
    name = "celery"

    def __init__(self, settings: Settings, engine: Engine):
        self.settings = settings
        self.engine = engine
        self.app = celery_app_for(settings)

    def publish(self, job_ids: list[int]) -> None:
        sent = self._send(job_ids)
        if sent:
            with self.engine.begin() as conn:
                mark_dispatched(conn, sent)

    def dispatch_due(self, now: dt.datetime) -> int:
        with self.engine.begin() as conn:
            job_ids = due_undispatched(conn, now=now, redispatch_after=self.settings.job_redispatch_after, limit=1000)
        sent = self._send(job_ids)
        unsent = sorted(set(job_ids) - set(sent))
        if unsent:
            with self.engine.begin() as conn:
                conn.execute(update(jobs).where(jobs.c.id.in_(unsent)).values(dispatched_at=None))
        return len(sent)

    def _send(self, job_ids: list[int]) -> list[int]:
        """Publish ids; on a broker failure keep quiet about the rest: the relay will send them later."""
        sent: list[int] = []
        if not job_ids:
            return sent
        try:
            with self.app.producer_or_acquire() as producer:
                for job_id in job_ids:
                    self.app.send_task(TASK_NAME, args=[job_id], producer=producer, retry=False)
                    sent.append(job_id)
        except Exception as exc:  # noqa: BLE001 - the database keeps the job; the relay retries
            log.warning("broker publish failed; jobs stay queued for the relay", extra={"error": str(exc), "unsent": len(job_ids) - len(sent)})
        return sent

    def check(self) -> None:
        with self.app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=2)

    def close(self) -> None:
        self.app.close()


def run_worker(settings: Settings, concurrency: int = 2, pool: str = "prefork") -> None:
    celery_app_for(settings).worker_main(["worker", f"--concurrency={concurrency}", f"--pool={pool}", "--loglevel=INFO",
                            "-Q", settings.celery_queue, "--without-gossip", "--without-mingle"])
