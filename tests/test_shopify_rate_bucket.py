"""Workers calling one shop share its Shopify cost bucket through the database, so they pace one another."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from app.models import ApiRateBucket
from app.shopify.rate_bucket import DatabaseBucketLedger
from app.tenancy import shop_context
from connectors.shopify import BucketReading, ShopifyClient
from tests.factories import make_shop
from tests.fake_shopify import FakeClock, FakeShopify

SHOP = "kwiaciarnia-roza.myshopify.com"
TOKEN = "shpat_fake_token"  # the fake's default access token


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def tiny_bucket(clock):
    """A shop whose bucket holds 10 points, refills 1 point a second, and where every query costs 4."""
    with FakeShopify(clock=clock.monotonic, maximum_available=10, restore_rate=1, default_cost=4) as fake:
        yield fake


@pytest.fixture
def shop_id(runtime) -> int:
    with runtime.sessions.begin() as session:
        return make_shop(session, domain=SHOP).id


def worker_client(fake: FakeShopify, clock: FakeClock, ledger) -> ShopifyClient:
    """The client one worker process would build for the shop (as app.shopify.access.admin_client does)."""
    return ShopifyClient(SHOP, TOKEN, base_url=fake.url, sleep=clock.sleep, clock=clock.monotonic,
                         bucket_ledger=ledger)


def test_a_worker_waits_for_points_another_worker_spent_instead_of_being_throttled(runtime, shop_id, tiny_bucket, clock):
    first = worker_client(tiny_bucket, clock, DatabaseBucketLedger(runtime.engine, shop_id))
    second = worker_client(tiny_bucket, clock, DatabaseBucketLedger(runtime.engine, shop_id))
    second.webhook_subscriptions()  # 10 → 6: the second worker now knows a call costs 4
    first.webhook_subscriptions()   # 6 → 2, spent behind the second worker's back
    second.webhook_subscriptions()  # needs 4, the shop has 2: wait 2 s for the refill
    assert tiny_bucket.throttled == 0
    assert clock.sleeps == pytest.approx([2.0])


def test_without_the_shared_bucket_the_same_calls_are_throttled(tiny_bucket, clock):
    first = worker_client(tiny_bucket, clock, None)
    second = worker_client(tiny_bucket, clock, None)
    second.webhook_subscriptions()
    first.webhook_subscriptions()
    second.webhook_subscriptions()
    assert tiny_bucket.throttled == 1


def test_the_shared_bucket_holds_what_shopify_said_last(runtime, shop_id, tiny_bucket, clock):
    worker_client(tiny_bucket, clock, DatabaseBucketLedger(runtime.engine, shop_id)).webhook_subscriptions()
    with runtime.sessions() as session, shop_context(shop_id):
        bucket = session.scalars(select(ApiRateBucket)).one()
    assert (bucket.available, bucket.maximum, bucket.restore_rate, bucket.as_of) == (6.0, 10.0, 1.0, clock.now)


def test_reserving_takes_the_points_so_the_next_reservation_waits(runtime, shop_id):
    ledger = DatabaseBucketLedger(runtime.engine, shop_id)
    ledger.record(BucketReading(available=5.0, maximum=10.0, restore_rate=2.0, at=100.0))
    assert ledger.reserve(4.0, now=100.0) == 0.0
    assert ledger.reserve(4.0, now=100.0) == pytest.approx(1.5)  # 1 point left, 3 more at 2 a second
    assert ledger.reserve(4.0, now=101.5) == 0.0


def test_a_shop_nobody_has_heard_from_yet_lets_the_call_go(runtime, shop_id):
    assert DatabaseBucketLedger(runtime.engine, shop_id).reserve(50.0, now=100.0) == 0.0
