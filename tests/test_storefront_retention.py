"""Storefront events are kept for STOREFRONT_EVENT_RETENTION_DAYS: an hourly purge deletes older ones in bounded batches."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from app.clock import all_scans
from app.jobs.executors.local import LocalWorker
from app.models import Job, StorefrontEvent, utcnow
from app.runtime import build_runtime
from app.storefront.capture import store_events
from app.storefront.retention import PURGE_KIND, delete_old_events, schedule_event_purge
from tests.factories import make_shop

NOW = utcnow()


@pytest.fixture
def retention(make_settings):
    def build(**env: str):
        built = build_runtime(make_settings(**env))
        opened.append(built)
        return built

    opened = []
    yield build
    for built in opened:
        built.close()


def add_shop(runtime) -> int:
    with runtime.sessions.begin() as session:
        return make_shop(session, platform="woocommerce").id


def add_events(runtime, shop_id: int, *ages: dt.timedelta) -> None:
    """One page view per age, received that long before NOW (oldest first, as they would have arrived)."""
    rows = [dict(visitor_id="visitor-0000000001", kind="page_view", url=f"https://shop.example/{age.days}d",
                 product_platform_id=None, data={}, occurred_at=NOW - age, received_at=NOW - age)
            for age in sorted(ages, reverse=True)]
    with runtime.engine.begin() as conn:
        store_events(conn, shop_id, rows)


def kept_ages_in_days(runtime) -> list[int]:
    with runtime.engine.connect() as conn:
        received = conn.execute(select(StorefrontEvent.received_at).order_by(StorefrontEvent.id)).scalars().all()
    return [round((NOW - at) / dt.timedelta(days=1)) for at in received]


def days(*values: int) -> list[dt.timedelta]:
    return [dt.timedelta(days=value) for value in values]


def test_the_hourly_purge_deletes_events_older_than_the_retention_of_every_shop_and_keeps_the_rest(retention):
    runtime = retention(STOREFRONT_EVENT_RETENTION_DAYS="180")
    first, second = add_shop(runtime), add_shop(runtime)
    add_events(runtime, first, *days(400, 181, 179, 0))
    add_events(runtime, second, *days(200, 30))

    queued = schedule_event_purge(runtime, NOW)
    LocalWorker(runtime).run(exit_when_idle=True)

    assert queued == 1
    assert sorted(kept_ages_in_days(runtime)) == [0, 30, 179]
    with runtime.sessions() as session:
        job = session.scalars(select(Job).where(Job.kind == PURGE_KIND)).one()
    assert job.status == "succeeded"


def test_the_purge_is_queued_once_an_hour(retention):
    runtime = retention()
    top_of_an_hour = dt.datetime(2026, 11, 29, 10, 0, tzinfo=dt.timezone.utc)

    assert schedule_event_purge(runtime, top_of_an_hour) == 1
    assert schedule_event_purge(runtime, top_of_an_hour + dt.timedelta(minutes=59)) == 0
    assert schedule_event_purge(runtime, top_of_an_hour + dt.timedelta(hours=1)) == 1
    assert {scan.id: scan.every_seconds for scan in all_scans()}[PURGE_KIND] == 3600


def test_a_retention_of_zero_days_keeps_events_forever(retention):
    runtime = retention(STOREFRONT_EVENT_RETENTION_DAYS="0")
    add_events(runtime, add_shop(runtime), *days(3000))

    assert schedule_event_purge(runtime, NOW) == 0
    assert kept_ages_in_days(runtime) == [3000]


def test_a_backlog_is_deleted_batch_by_batch_and_one_run_stops_after_its_batches(retention):
    runtime = retention()
    add_events(runtime, add_shop(runtime), *days(*range(300, 310)), *days(2, 1))
    cutoff = NOW - dt.timedelta(days=180)

    first_run = delete_old_events(runtime.engine, cutoff, batch_rows=3, max_batches=2)
    left_after_first_run = len(kept_ages_in_days(runtime))
    second_run = delete_old_events(runtime.engine, cutoff, batch_rows=3)

    assert (first_run, left_after_first_run) == (6, 6)
    assert second_run == 4
    assert kept_ages_in_days(runtime) == [2, 1]


def test_the_default_retention_is_180_days_and_an_empty_table_is_no_work(retention, make_settings):
    runtime = retention()

    assert make_settings().storefront.event_retention_days == 180
    assert delete_old_events(runtime.engine, NOW) == 0
