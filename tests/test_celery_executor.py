"""The celery executor: Celery workers on a real Redis run the same job functions, carrying job ids only."""
from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import pytest
import redis
from sqlalchemy import select

from app.jobs.queue import enqueue
from app.models import Job, utcnow
from app.runtime import build_runtime
from tests.conftest import RABBITMQ_URL, REDIS_URL, require, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def celery_env():
    require("Redis", REDIS_URL)
    queue = f"companion-test-{uuid.uuid4().hex[:8]}"
    yield {"JOB_EXECUTOR": "celery", "CELERY_BROKER_URL": REDIS_URL, "CELERY_QUEUE": queue,
           "JOB_REDISPATCH_AFTER_SECONDS": "1"}
    redis.Redis.from_url(REDIS_URL).delete(queue)


@pytest.fixture
def celery_runtime(make_settings, celery_env):
    runtime = build_runtime(make_settings(**celery_env))
    yield runtime
    runtime.close()


def _job(runtime, job_id) -> Job:
    with runtime.sessions() as session:
        return session.get(Job, job_id)


def _queued_messages(queue: str) -> list[dict]:
    return [json.loads(raw) for raw in redis.Redis.from_url(REDIS_URL).lrange(queue, 0, -1)]


def _task_arguments(message: dict) -> list:
    """Celery's task message body: [args, kwargs, embed], base64-encoded JSON on Redis."""
    body = message["body"]
    if message["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body).decode()
    return json.loads(body)


def test_the_broker_carries_only_the_job_id_and_only_after_commit(celery_runtime, celery_env, tmp_path):
    with celery_runtime.sessions.begin() as session:
        job_id = enqueue(session, "test.append", path=str(tmp_path / "t"), text="secret-ish payload")
        assert _queued_messages(celery_env["CELERY_QUEUE"]) == []
    [message] = _queued_messages(celery_env["CELERY_QUEUE"])
    assert message["headers"]["task"] == "companion.run_job"
    assert message["headers"]["eta"] is None
    assert _task_arguments(message)[:2] == [[job_id], {}]
    assert _job(celery_runtime, job_id).dispatched_at is not None


def test_celery_workers_run_the_same_job_functions_end_to_end(celery_runtime, celery_env, processes, tmp_path):
    trace = tmp_path / "trace"
    processes.start("worker", "--concurrency", "2", **celery_env)
    with celery_runtime.sessions.begin() as session:
        job_ids = [enqueue(session, "test.append", path=str(trace), text="via-celery") for _ in range(20)]
        failing = enqueue(session, "test.flaky", path=str(tmp_path / "flaky"), failures=1)
    wait_until(lambda: all(_job(celery_runtime, j).status == "succeeded" for j in job_ids), message="celery ran the jobs")
    wait_until(lambda: _job(celery_runtime, failing).status == "queued" and _job(celery_runtime, failing).attempts == 1,
               message="celery ran the flaky job once and queued its retry")
    assert sorted(int(line.split("job=")[1].split()[0]) for line in trace.read_text().splitlines()) == sorted(job_ids)

    retried = _job(celery_runtime, failing)
    assert (retried.status, retried.attempts, retried.dispatched_at) == ("queued", 1, None), "a retry waits in due_at, not in the broker"


def test_a_job_whose_broker_message_was_lost_still_runs_via_the_sweeper(celery_runtime, celery_env, processes, tmp_path):
    with celery_runtime.sessions.begin() as session:
        job_id = enqueue(session, "test.append", path=str(tmp_path / "t"), text="lost")
    redis.Redis.from_url(REDIS_URL).delete(celery_env["CELERY_QUEUE"])  # the broker lost the message

    processes.start("worker", "--concurrency", "1", **celery_env)
    processes.start("clock", **celery_env)
    wait_until(lambda: _job(celery_runtime, job_id).status == "succeeded", message="the relay re-dispatched the job")
    assert _job(celery_runtime, job_id).attempts == 1


def test_celery_workers_on_rabbitmq_run_the_same_job_functions(make_settings, processes, tmp_path):
    require("RabbitMQ", RABBITMQ_URL)
    env = {"JOB_EXECUTOR": "celery", "CELERY_BROKER_URL": RABBITMQ_URL, "CELERY_QUEUE": f"companion-test-{uuid.uuid4().hex[:8]}"}
    runtime = build_runtime(make_settings(**env))
    try:
        processes.start("worker", "--concurrency", "1", **env)
        with runtime.sessions.begin() as session:
            job_ids = [enqueue(session, "test.append", path=str(tmp_path / "t"), text="via-rabbitmq") for _ in range(5)]
        wait_until(lambda: all(_job(runtime, j).status == "succeeded" for j in job_ids), message="celery on RabbitMQ ran the jobs")
    finally:
        runtime.close()


def test_a_delayed_job_is_published_only_once_due(celery_runtime, celery_env, processes, tmp_path):
    with celery_runtime.sessions.begin() as session:
        job_id = enqueue(session, "test.append", path=str(tmp_path / "t"), text="later", due_at=utcnow() + dt.timedelta(seconds=2))
    assert _queued_messages(celery_env["CELERY_QUEUE"]) == []
    assert celery_runtime.executor.dispatch_due(utcnow()) == 0
    assert celery_runtime.executor.dispatch_due(utcnow() + dt.timedelta(seconds=3)) == 1
    [message] = _queued_messages(celery_env["CELERY_QUEUE"])
    assert _task_arguments(message)[0] == [job_id]
