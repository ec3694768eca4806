"""Several worker processes share one queue: each job runs once, and a killed worker's job is taken over."""
from __future__ import annotations

import os
import re
import signal
from collections import Counter

import pytest
from sqlalchemy import func, select

from app.jobs.queue import enqueue, jobs
from app.models import Job
from tests.conftest import wait_until

pytestmark = pytest.mark.slow


def _statuses(runtime) -> Counter:
    with runtime.engine.connect() as conn:
        return Counter(dict(conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()))


def test_two_workers_never_run_the_same_job(runtime, processes, tmp_path):
    trace = tmp_path / "trace"
    workers = [processes.start("worker", "--batch-size", "4") for _ in range(2)]
    # Both claim from the start: on a loaded machine one worker could drain the queue before the other is up.
    wait_until(lambda: all("worker started" in processes.log_of(w) for w in workers), message="both workers up")
    with runtime.sessions.begin() as session:
        job_ids = [enqueue(session, "test.append", path=str(trace), text="ran") for _ in range(300)]

    wait_until(lambda: _statuses(runtime)["succeeded"] == 300, message="all jobs succeeded")

    runs = Counter(int(m) for m in re.findall(r"job=(\d+)", trace.read_text()))
    assert sorted(runs) == sorted(job_ids)
    assert set(runs.values()) == {1}
    pids = set(re.findall(r"pid=(\d+)", trace.read_text()))
    assert pids == {str(w.pid) for w in workers}, "both workers took part"
    with runtime.sessions() as session:
        assert set(session.scalars(select(Job.attempts))) == {1}


def test_a_kind_limited_to_one_at_a_time_never_overlaps_across_workers(runtime, processes, tmp_path):
    trace = tmp_path / "trace"
    with runtime.sessions.begin() as session:
        for _ in range(6):
            enqueue(session, "test.one_at_a_time", path=str(trace), seconds=0.2)
    for _ in range(2):
        processes.start("worker")
    wait_until(lambda: _statuses(runtime)["succeeded"] == 6, message="all jobs succeeded")

    spans = {}
    for kind, moment, job in re.findall(r"(begin|end) (\d+) job=(\d+)", trace.read_text()):
        spans.setdefault(job, {})[kind] = int(moment)
    ordered = sorted((s["begin"], s["end"]) for s in spans.values())
    assert len(ordered) == 6
    assert all(previous_end <= next_begin for (_, previous_end), (next_begin, _) in zip(ordered, ordered[1:]))


def test_a_worker_killed_mid_job_leaves_it_to_another_worker_which_completes_it_once(runtime, processes, tmp_path):
    trace = tmp_path / "trace"
    with runtime.sessions.begin() as session:
        job_id = enqueue(session, "test.slow", path=str(trace), seconds=3)
    doomed = processes.start("worker", JOB_LEASE_SECONDS="2")
    wait_until(lambda: trace.exists() and "start" in trace.read_text(), message="job started")
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait()

    processes.start("worker", JOB_LEASE_SECONDS="2")
    wait_until(lambda: _statuses(runtime)["succeeded"] == 1, message="job completed by the second worker")

    lines = trace.read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["start", "start", "done"]
    assert f"job={job_id} attempt=2" in lines[-1]
    with runtime.sessions() as session:
        job = session.get(Job, job_id)
    assert (job.status, job.attempts) == ("succeeded", 2)
