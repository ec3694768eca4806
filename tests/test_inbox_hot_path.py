"""The webhook hot path: the event and its job stored straight on the driver, and SQLite writers taking turns."""
from __future__ import annotations

import datetime as dt
import fcntl
import multiprocessing

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.inbox import accept_event
from app.models import InboundEvent, Job
from app.tenancy import shop_context
from tests.factories import make_shop

# A job kind registered by the test suite that does nothing (see tests/jobkinds.py).
INGEST = "test.ingest_nothing"


@pytest.fixture
def shop_id(runtime) -> int:
    with runtime.sessions.begin() as session:
        return make_shop(session).id


def test_an_accepted_event_reads_back_exactly_as_it_was_given(runtime, shop_id):
    updated = dt.datetime(2026, 11, 29, 8, 30, 15, 123456, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    event_id = accept_event(runtime, shop_id=shop_id, platform="shopify", topic="orders/updated", dedupe_key="w-1",
                            headers={"topic": "orders/updated", "api_version": "2026-01"}, body=b'{"id": 1, "note": "\xc5\xbc"}',
                            ingest_job=INGEST, resource_updated_at=updated)
    with runtime.sessions() as session, shop_context(shop_id):
        event = session.get(InboundEvent, event_id)
        [job] = session.scalars(select(Job).where(Job.kind == INGEST)).all()
    assert event.headers == {"topic": "orders/updated", "api_version": "2026-01"}
    assert event.body == b'{"id": 1, "note": "\xc5\xbc"}'
    assert event.resource_updated_at == updated and event.resource_updated_at.utcoffset() == dt.timedelta(0)
    assert event.status == "received" and event.received_at.tzinfo is not None
    assert (job.args, job.shop_id, job.status, job.attempts) == ({"event_id": event_id}, shop_id, "queued", 0)
    assert job.max_attempts == runtime.settings.job_max_attempts


def test_a_repeated_delivery_stores_nothing_twice(runtime, shop_id):
    first = accept_event(runtime, shop_id=shop_id, platform="shopify", topic="orders/create", dedupe_key="w-2",
                         headers={}, body=b"{}", ingest_job=INGEST)
    again = accept_event(runtime, shop_id=shop_id, platform="shopify", topic="orders/create", dedupe_key="w-2",
                         headers={}, body=b"{}", ingest_job=INGEST)
    with runtime.sessions() as session, shop_context(shop_id):
        jobs = session.scalars(select(Job).where(Job.kind == INGEST)).all()
    assert first is not None and again is None and len(jobs) == 1


def test_an_event_for_a_shop_that_is_gone_raises_the_usual_integrity_error_and_leaves_no_job(runtime):
    with pytest.raises(IntegrityError):
        accept_event(runtime, shop_id=987654, platform="shopify", topic="orders/create", dedupe_key="w-3",
                     headers={}, body=b"{}", ingest_job=INGEST)
    with runtime.sessions() as session:
        assert session.scalars(select(Job).where(Job.kind == INGEST).execution_options(all_shops=True)).all() == []


def _lock_is_free(path: str, answer) -> None:
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            answer.put(True)
        except BlockingIOError:
            answer.put(False)


def lock_is_free_for_another_process(path: str) -> bool:
    context = multiprocessing.get_context("fork")
    answer = context.Queue()
    process = context.Process(target=_lock_is_free, args=(path, answer))
    process.start()
    process.join(timeout=30)
    return answer.get(timeout=5)


def test_on_sqlite_a_write_transaction_holds_the_writers_turn_until_commit_or_rollback(runtime):
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("the writers' turn is an SQLite matter: PostgreSQL has row locks")
    lock_path = runtime.engine.url.database + "-writer.lock"
    with runtime.engine.begin():
        during_transaction = lock_is_free_for_another_process(lock_path)
    after_commit = lock_is_free_for_another_process(lock_path)
    connection = runtime.engine.connect()
    connection.begin()
    during_rolled_back = lock_is_free_for_another_process(lock_path)
    connection.rollback()
    after_rollback = lock_is_free_for_another_process(lock_path)
    connection.close()
    assert (during_transaction, after_commit, during_rolled_back, after_rollback) == (False, True, False, True)


def test_deliveries_arriving_at_once_are_each_stored_once_with_their_own_job(runtime, shop_id):
    import threading

    outcomes: dict[str, int | None] = {}

    def deliver(key: str, copy: int) -> None:
        outcomes[f"{key}/{copy}"] = accept_event(runtime, shop_id=shop_id, platform="shopify", topic="orders/create",
                                                 dedupe_key=key, headers={}, body=key.encode(), ingest_job=INGEST)

    threads = [threading.Thread(target=deliver, args=(f"w-{n}", copy)) for n in range(12) for copy in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    with runtime.sessions() as session, shop_context(shop_id):
        events = {event.dedupe_key: event.id for event in session.scalars(select(InboundEvent))}
        jobs = sorted(job.args["event_id"] for job in session.scalars(select(Job).where(Job.kind == INGEST)))
    assert len(events) == 12 and jobs == sorted(events.values())
    for n in range(12):  # of the two copies of each delivery, exactly one was accepted, with that event's id
        answers = [outcomes[f"w-{n}/{copy}"] for copy in range(2)]
        assert sorted(answers, key=lambda a: a is None) == [events[f"w-{n}"], None]


def _hold_the_writers_turn(path: str, holding, release) -> None:
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        holding.set()
        release.wait(30)
        with open(path + ".released", "w") as marker:  # written while the turn is still held
            marker.write("released")


def test_on_sqlite_a_writer_waits_for_another_processs_turn_however_long_and_goes_on_after_it(runtime, shop_id):
    if runtime.engine.dialect.name != "sqlite":
        pytest.skip("the writers' turn is an SQLite matter: PostgreSQL has row locks")
    import os
    import threading

    lock_path = runtime.engine.url.database + "-writer.lock"
    context = multiprocessing.get_context("fork")
    holding, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_the_writers_turn, args=(lock_path, holding, release))
    holder.start()
    assert holding.wait(30)
    outcome: dict = {}

    def write() -> None:
        outcome["event"] = accept_event(runtime, shop_id=shop_id, platform="shopify", topic="orders/create",
                                        dedupe_key="w-queued", headers={}, body=b"{}", ingest_job=INGEST)
        outcome["saw_release"] = os.path.exists(lock_path + ".released")

    writer = threading.Thread(target=write)
    writer.start()
    writer.join(timeout=0.5)
    waiting_while_held = writer.is_alive()
    release.set()
    writer.join(timeout=30)
    holder.join(timeout=30)
    assert waiting_while_held and outcome["event"] is not None and outcome["saw_release"]


def test_on_sqlite_a_thread_writing_on_two_connections_at_once_gets_the_locked_error_instead_of_waiting_on_itself(
        sqlite_database_url):
    import sqlite3

    from app.db import make_engine
    from app.migrate import upgrade

    engine = make_engine(sqlite_database_url, sqlite_busy_timeout_ms=300)
    try:
        upgrade(engine)
        with engine.begin() as first:
            first.execute(Job.__table__.delete())
            with pytest.raises(sqlite3.OperationalError, match="locked"):  # SQLite's own, from BEGIN IMMEDIATE
                with engine.begin() as second:
                    second.execute(Job.__table__.delete())
    finally:
        engine.dispose()
