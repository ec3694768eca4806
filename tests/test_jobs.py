"""Background jobs: retried with growing delays, dead-lettered with their error, fenced by leases, paced per kind."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select, update

from app.jobs.executors.local import LocalWorker
from app.jobs.queue import claim_due, enqueue, jobs, mark_failed, mark_succeeded, requeue_expired_leases
from app.jobs.registry import BadJobArguments, UnknownJobKind
from app.jobs.runner import run_claimed
from app.models import Job, Tag, utcnow
from app.tenancy import shop_context
from tests.factories import make_shop


def _enqueue(runtime, kind, **kwargs) -> int:
    with runtime.sessions.begin() as session:
        return enqueue(session, kind, **kwargs)


def _job(runtime, job_id) -> Job:
    with runtime.sessions() as session:
        return session.get(Job, job_id)


def _make_due_now(runtime, job_id) -> None:
    with runtime.engine.begin() as conn:
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(due_at=utcnow()))


def _work(runtime) -> int:
    return LocalWorker(runtime).run(exit_when_idle=True)


def test_a_job_runs_once_and_is_marked_succeeded(runtime, tmp_path):
    trace = tmp_path / "trace"
    job_id = _enqueue(runtime, "test.append", path=str(trace), text="hello")
    assert _work(runtime) == 1
    job = _job(runtime, job_id)
    assert (job.status, job.attempts) == ("succeeded", 1)
    assert trace.read_text().startswith("hello")


def test_failing_job_is_retried_with_growing_delays_then_dead_lettered(runtime, tmp_path):
    trace = tmp_path / "trace"
    job_id = _enqueue(runtime, "test.flaky", path=str(trace), failures=99, max_attempts=5)
    delays = []
    for attempt in range(1, 6):
        before = utcnow()
        _work(runtime)
        job = _job(runtime, job_id)
        assert job.attempts == attempt
        if attempt < 5:
            assert job.status == "queued"
            delays.append((job.due_at - before).total_seconds())
            _make_due_now(runtime, job_id)
    assert delays == sorted(delays) and delays[-1] > delays[0] * 4
    assert job.status == "dead"
    assert "ConnectionError: provider unreachable on attempt 5" in job.last_error
    assert trace.read_text().count("attempt") == 5


def test_a_job_that_recovers_succeeds_on_a_later_attempt(runtime, tmp_path):
    job_id = _enqueue(runtime, "test.flaky", path=str(tmp_path / "t"), failures=1)
    _work(runtime)
    _make_due_now(runtime, job_id)
    _work(runtime)
    job = _job(runtime, job_id)
    assert (job.status, job.attempts, job.last_error) == ("succeeded", 2, None)


def test_retry_after_from_a_provider_sets_the_next_due_time(runtime):
    job_id = _enqueue(runtime, "test.rate_limited_by_provider", retry_after=120)
    before = utcnow()
    _work(runtime)
    job = _job(runtime, job_id)
    assert job.status == "queued"
    assert 119 <= (job.due_at - before).total_seconds() <= 125
    assert "429" in job.last_error


def test_malformed_job_arguments_dead_letter_that_job_and_the_others_still_run(runtime, tmp_path):
    trace = tmp_path / "trace"
    good_before = _enqueue(runtime, "test.append", path=str(trace), text="first")
    with runtime.engine.begin() as conn:  # a row written by something that skipped validation
        bad = conn.execute(jobs.insert().values(kind="test.append", args={"path": 5}, status="queued", due_at=utcnow(),
                                                attempts=0, max_attempts=8, created_at=utcnow()).returning(jobs.c.id)).scalar_one()
        unknown = conn.execute(jobs.insert().values(kind="no.such.kind", args={}, status="queued", due_at=utcnow(),
                                                    attempts=0, max_attempts=8, created_at=utcnow()).returning(jobs.c.id)).scalar_one()
    good_after = _enqueue(runtime, "test.append", path=str(trace), text="second")
    _work(runtime)
    assert _job(runtime, bad).status == "dead"
    assert "missing a required argument: 'text'" in _job(runtime, bad).last_error
    assert _job(runtime, unknown).status == "dead" and "no.such.kind" in _job(runtime, unknown).last_error
    assert _job(runtime, good_before).status == _job(runtime, good_after).status == "succeeded"


def test_enqueue_refuses_arguments_that_do_not_fit_the_kind(runtime):
    with runtime.sessions() as session:
        with pytest.raises(BadJobArguments, match="unexpected keyword argument 'colour'"):
            enqueue(session, "noop", colour="red")
        with pytest.raises(UnknownJobKind):
            enqueue(session, "no.such.kind")


def test_enqueue_with_the_same_dedupe_key_inserts_one_job(runtime):
    first = _enqueue(runtime, "noop", dedupe_key="scan:carts:42")
    second = _enqueue(runtime, "noop", dedupe_key="scan:carts:42")
    assert first is not None and second is None
    with runtime.sessions() as session:
        assert len(session.scalars(select(Job).where(Job.kind == "noop")).all()) == 1


def test_a_delayed_job_is_not_claimed_before_it_is_due(runtime):
    _enqueue(runtime, "noop", due_at=utcnow() + dt.timedelta(minutes=5))
    assert _work(runtime) == 0


def test_job_writes_commit_together_with_its_success(runtime):
    with runtime.sessions.begin() as session:
        shop_id = make_shop(session).id
    _enqueue(runtime, "test.tag_customer_shop", shop_id=shop_id, name="vip")
    _work(runtime)
    with runtime.sessions() as session, shop_context(shop_id):
        assert [t.name for t in session.scalars(select(Tag))] == ["vip"]


def test_a_worker_that_lost_its_lease_cannot_settle_the_job_and_its_writes_are_rolled_back(runtime):
    with runtime.sessions.begin() as session:
        shop_id = make_shop(session).id
    past = utcnow() - dt.timedelta(minutes=10)
    _enqueue(runtime, "test.tag_customer_shop", shop_id=shop_id, name="late", due_at=past)
    with runtime.engine.begin() as conn:
        [slow_claim] = claim_due(conn, worker="slow", limit=1, lease_seconds=60, now=past)
    with runtime.engine.begin() as conn:
        assert requeue_expired_leases(conn) == (1, 0)
        [fresh_claim] = claim_due(conn, worker="fresh", limit=1, lease_seconds=60)
    outcome = run_claimed(runtime.engine, runtime.sessions, runtime.settings, slow_claim)
    assert outcome.status == "lost"
    with runtime.sessions() as session, shop_context(shop_id):
        assert session.scalars(select(Tag)).all() == []
    with runtime.engine.begin() as conn:
        assert mark_succeeded(conn, fresh_claim)
        assert not mark_failed(conn, slow_claim, "too late", None)


def test_a_kind_limited_to_one_at_a_time_is_not_claimed_while_one_runs(runtime, tmp_path):
    for _ in range(2):
        _enqueue(runtime, "test.one_at_a_time", path=str(tmp_path / "t"), seconds=0)
    with runtime.engine.begin() as conn:
        first = claim_due(conn, worker="w1", limit=5, lease_seconds=60)
    with runtime.engine.begin() as conn:
        second = claim_due(conn, worker="w2", limit=5, lease_seconds=60)
    assert len(first) == 1 and second == []
    with runtime.engine.begin() as conn:
        mark_succeeded(conn, first[0])
        assert len(claim_due(conn, worker="w2", limit=5, lease_seconds=60)) == 1


def test_a_paced_kind_starts_no_more_jobs_than_its_rate_allows(runtime):
    for _ in range(12):
        _enqueue(runtime, "test.paced")
    t0 = utcnow()
    claimed = []
    for offset_ms in (0, 0, 100, 200, 400, 1400):
        with runtime.engine.begin() as conn:
            claimed.append(len(claim_due(conn, worker="w", limit=20, lease_seconds=60,
                                         now=t0 + dt.timedelta(milliseconds=offset_ms))))
    # 5 per second: a burst of 5, then one every 200 ms.
    assert claimed == [5, 0, 0, 1, 1, 5]
