"""One interface, two engines: the `local` executor (workers poll the job table) and `celery`."""
from __future__ import annotations

import datetime as dt
from typing import Protocol

from sqlalchemy import Engine

from app.config import Settings


class Executor(Protocol):
    name: str

    def publish(self, job_ids: list[int]) -> None:
        """Jobs were just committed; make them known to whoever runs them."""

    def dispatch_due(self, now: dt.datetime) -> int:
        """Hand over due jobs no runner knows of (delayed jobs that came due, lost broker messages)."""

    def check(self) -> None:
        """Raise if the executor cannot accept work (broker unreachable)."""

    def close(self) -> None:
        ...


def make_executor(settings: Settings, engine: Engine) -> Executor:
    if settings.executor == "celery":
        from app.jobs.executors.celery_executor import CeleryExecutor

        return CeleryExecutor(settings, engine)
    from app.jobs.executors.local import LocalExecutor

    return LocalExecutor()
