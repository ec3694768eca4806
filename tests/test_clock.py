"""The clock: scans run on one leader only; a second clock stands by and takes over when the leader dies."""
from __future__ import annotations

import datetime as dt
import os
import signal

import pytest
from sqlalchemy import select

from app.clock import LeaderLock, all_scans, period_key, schedule_job_purge
from app.models import Job, utcnow
from tests.conftest import wait_until


def _scan_runs(processes, process, scan_id: str) -> int:
    return sum(1 for line in processes.log_of(process).splitlines()
               if '"scan finished"' in line and f'"scan": "{scan_id}"' in line)


@pytest.mark.slow
def test_two_clocks_at_once_run_each_scan_on_one_of_them_only(processes):
    clock_env = {"LOG_LEVEL": "DEBUG", "CLOCK_LOCK_SECONDS": "3"}
    first, second = processes.start("clock", **clock_env), processes.start("clock", **clock_env)
    wait_until(lambda: _scan_runs(processes, first, "jobs.relay") + _scan_runs(processes, second, "jobs.relay") >= 4,
               message="the leader ran its scans")
    leader, standby = (first, second) if _scan_runs(processes, first, "jobs.relay") else (second, first)
    assert _scan_runs(processes, standby, "jobs.relay") == 0
    assert "another clock leads; standing by" in processes.log_of(standby)

    os.killpg(leader.pid, signal.SIGKILL)
    leader.wait()
    wait_until(lambda: _scan_runs(processes, standby, "jobs.relay") >= 2, message="the standby took over")
    assert "clock is the leader" in processes.log_of(standby)


def test_only_one_holder_gets_the_leader_lock_until_it_lets_go(runtime):
    first = LeaderLock(runtime.engine, lease_seconds=30, holder="clock-1")
    second = LeaderLock(runtime.engine, lease_seconds=30, holder="clock-2")
    try:
        assert first.try_acquire()
        assert not second.try_acquire()
        assert first.renew()
        first.release()
        assert second.try_acquire()
        assert not first.try_acquire()
    finally:
        first.release()
        second.release()


def test_leadership_passes_on_when_the_leader_stops_renewing_or_dies(runtime):
    first = LeaderLock(runtime.engine, lease_seconds=30, holder="clock-1")
    second = LeaderLock(runtime.engine, lease_seconds=30, holder="clock-2")
    assert first.try_acquire()
    if runtime.engine.dialect.name == "sqlite":
        with runtime.engine.begin() as conn:  # the leader stopped renewing long ago
            conn.exec_driver_sql("UPDATE clock_leases SET expires_at = '2000-01-01 00:00:00'")
    else:
        first._pg_connection.invalidate()  # the leader's database session died with it
    try:
        assert second.try_acquire()
        assert not first.renew()
    finally:
        second.release()


def test_a_scan_run_twice_in_one_period_inserts_its_job_once(runtime):
    now = utcnow().replace(minute=10)
    assert schedule_job_purge(runtime, now) == 1
    assert schedule_job_purge(runtime, now + dt.timedelta(minutes=5)) == 0
    assert schedule_job_purge(runtime, now + dt.timedelta(hours=1)) == 1
    with runtime.sessions() as session:
        keys = session.scalars(select(Job.dedupe_key).where(Job.kind == "jobs.purge_finished")).all()
    assert sorted(keys) == sorted({period_key("jobs.purge_finished", 3600, now),
                                   period_key("jobs.purge_finished", 3600, now + dt.timedelta(hours=1))})


def test_scans_have_stable_ids_and_intervals():
    scans = {scan.id: scan.every_seconds for scan in all_scans()}
    assert scans["jobs.sweep_leases"] == 10
    assert scans["jobs.relay"] == 1
    assert scans["jobs.purge_finished"] == 3600
