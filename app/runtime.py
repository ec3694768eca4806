"""The service's wiring for one process: settings, database engine, sessions and job executor."""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from app import crypto
from app.config import Settings
from app.db import make_engine
from app.jobs.executors import Executor, make_executor


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    executor: Executor

    def close(self) -> None:
        from app.jobs.runner import stop_lease_keeper

        stop_lease_keeper(self.engine)
        self.executor.close()
        self.engine.dispose()


def build_runtime(settings: Settings) -> Runtime:
    crypto.configure_keys(settings.fernet_keys)
    engine = make_engine(settings.database_url)
    sessions = sessionmaker(bind=engine, expire_on_commit=False, info={"settings": settings})
    executor = make_executor(settings, engine)
    _publish_jobs_after_commit(sessions, executor)
    return Runtime(settings, engine, sessions, executor)


def _publish_jobs_after_commit(sessions: sessionmaker[Session], executor: Executor) -> None:
    """Tell the executor about jobs only once the rows they read are committed."""

    @event.listens_for(sessions, "after_commit")
    def _after_commit(session: Session) -> None:
        job_ids = session.info.pop("enqueued_job_ids", None)
        if job_ids:
            executor.publish(job_ids)

    @event.listens_for(sessions, "after_rollback")
    def _after_rollback(session: Session) -> None:
        session.info.pop("enqueued_job_ids", None)
