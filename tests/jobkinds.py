"""Job kinds used only by the tests; they leave their trace in a file so other processes can be checked."""
from __future__ import annotations

import os
import time

from app.jobs.registry import job_kind
from app.jobs.runner import RetryLater
from app.models import Tag


def _append(path: str, line: str) -> None:
    with open(path, "a") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


@job_kind("test.append")
def append_line(ctx, path: str, text: str) -> None:
    _append(path, f"{text} job={ctx.job_id} pid={os.getpid()}")


@job_kind("test.slow")
def slow(ctx, path: str, seconds: float) -> None:
    _append(path, f"start job={ctx.job_id} attempt={ctx.attempt} pid={os.getpid()}")
    time.sleep(seconds)
    _append(path, f"done job={ctx.job_id} attempt={ctx.attempt} pid={os.getpid()}")


@job_kind("test.flaky")
def flaky(ctx, path: str, failures: int) -> None:
    _append(path, f"attempt {ctx.attempt}")
    if ctx.attempt <= failures:
        raise ConnectionError(f"provider unreachable on attempt {ctx.attempt}")


@job_kind("test.rate_limited_by_provider")
def rate_limited(ctx, retry_after: float) -> None:
    raise RetryLater(retry_after, "provider answered 429")


@job_kind("test.tag_customer_shop")
def tag_shop(ctx, name: str) -> None:
    """Writes a row in the job's shop; used to check a job's writes commit only with its success."""
    ctx.session.add(Tag(shop_id=ctx.shop_id, name=name))


@job_kind("test.one_at_a_time", concurrency=1)
def one_at_a_time(ctx, path: str, seconds: float) -> None:
    _append(path, f"begin {time.monotonic_ns()} job={ctx.job_id}")
    time.sleep(seconds)
    _append(path, f"end {time.monotonic_ns()} job={ctx.job_id}")


@job_kind("test.paced", rate_per_second=5)
def paced(ctx) -> None:
    pass


@job_kind("test.ingest_nothing")
def ingest_nothing(ctx, event_id: int) -> None:
    """Stands in for a platform's ingest where a test only needs the stored event."""
