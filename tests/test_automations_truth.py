"""The send-time truth check for WooCommerce, against the loopback fake store: what the store says now, or 'unreachable'."""
from __future__ import annotations

import datetime as dt

import pytest

from app.automations.truth import LiveQuery, StoreUnreachable, purchase_since, read_live_state
from tests.factories import make_shop
from tests.fake_woocommerce import CONSUMER_KEY, CONSUMER_SECRET, FakeWooCommerce

SINCE = dt.datetime(2026, 11, 20, 8, 0, tzinfo=dt.timezone.utc)
EMAIL = "zofia.nowak@example.pl"


@pytest.fixture
def store():
    with FakeWooCommerce() as fake:
        yield fake


@pytest.fixture
def woo_runtime(make_settings):
    from app.runtime import build_runtime

    built = build_runtime(make_settings(ALLOW_PRIVATE_STORE_URLS="true"))
    yield built
    built.close()


@pytest.fixture
def shop_id(woo_runtime, store):
    with woo_runtime.sessions.begin() as session:
        return make_shop(session, store.url, platform="woocommerce",
                         credentials={"consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET}).id


def test_an_order_placed_by_the_same_email_since_the_cart_is_seen_as_a_purchase(woo_runtime, shop_id, store):
    store.add_order(501, email=EMAIL, modified=dt.datetime(2026, 11, 20, 9, 0))
    query = LiveQuery(shop_id, "woocommerce", SINCE, email=EMAIL, tokens=("cart-1",))

    live = read_live_state(woo_runtime.sessions, woo_runtime.settings, query)

    assert purchase_since(live, query).platform_id == "501"


def test_an_order_by_someone_else_is_no_purchase(woo_runtime, shop_id, store):
    store.add_order(502, email="inna.osoba@example.pl", modified=dt.datetime(2026, 11, 20, 9, 0))
    query = LiveQuery(shop_id, "woocommerce", SINCE, email=EMAIL, tokens=("cart-1",))

    assert purchase_since(read_live_state(woo_runtime.sessions, woo_runtime.settings, query), query) is None


def test_a_store_that_does_not_answer_is_reported_unreachable(woo_runtime, shop_id, store):
    store.stop()
    query = LiveQuery(shop_id, "woocommerce", SINCE, email=EMAIL)
    with pytest.raises(StoreUnreachable):
        read_live_state(woo_runtime.sessions, woo_runtime.settings, query)


def test_a_platform_without_a_registered_check_is_unreachable_never_assumed_fine(woo_runtime, shop_id):
    with pytest.raises(StoreUnreachable):
        read_live_state(woo_runtime.sessions, woo_runtime.settings, LiveQuery(shop_id, "prestashop", SINCE))


# --- one read shared by many runs ------------------------------------------------------------------------------

ANNA = "anna.kowalska@example.pl"


def order_ids(live) -> list[str]:
    return sorted(order.platform_id for order in live.orders)


def window_reads(store) -> list:
    return [r for r in store.requests_to("/orders", "GET") if "search" not in r.query]


def test_runs_of_one_shop_are_answered_from_one_read_of_the_orders_changed_since_the_earliest(woo_runtime, shop_id,
                                                                                                 store):
    from app.automations.truth import LiveReads

    store.add_order(501, email=EMAIL, modified=dt.datetime(2026, 11, 20, 9, 0))
    store.add_order(502, email=ANNA, modified=dt.datetime(2026, 11, 20, 10, 0))
    store.add_order(503, email="inna.osoba@example.pl", modified=dt.datetime(2026, 11, 20, 9, 30))
    store.add_order(504, email=EMAIL, modified=dt.datetime(2026, 11, 20, 7, 30))  # before Zofia's cart
    zofia = LiveQuery(shop_id, "woocommerce", SINCE, email=EMAIL, tokens=("cart-1",))
    anna = LiveQuery(shop_id, "woocommerce", SINCE + dt.timedelta(minutes=30), email=ANNA, tokens=("cart-2",))
    early = LiveQuery(shop_id, "woocommerce", SINCE - dt.timedelta(hours=1), email="nikt@example.pl")
    store.requests.clear()

    lives = LiveReads(woo_runtime.sessions, woo_runtime.settings, {1: zofia, 2: anna, 3: early}).states([1, 2, 3])

    assert len(window_reads(store)) == 1 and store.requests_to("/orders") == window_reads(store), "one read for all"
    assert window_reads(store)[0].query["modified_after"] == "2026-11-20T07:00:00", "from the earliest cart"
    assert purchase_since(lives[1], zofia).platform_id == "501"
    assert purchase_since(lives[2], anna).platform_id == "502"
    assert purchase_since(lives[3], early) is None
    alone = {run: read_live_state(woo_runtime.sessions, woo_runtime.settings, query)
             for run, query in ((1, zofia), (2, anna), (3, early))}
    assert {run: order_ids(live) for run, live in lives.items()} == \
        {run: order_ids(live) for run, live in alone.items()}, "as each run's own read (504 predates the cart)"


def test_a_window_wider_than_the_bound_is_read_run_by_run(woo_runtime, shop_id, store, monkeypatch):
    from app.automations import truth

    monkeypatch.setattr(truth, "WINDOW_PAGES", 1)
    for number in range(101):
        store.add_order(600 + number, email=f"klient{number}@example.pl", modified=dt.datetime(2026, 11, 20, 9, 0))
    store.add_order(501, email=EMAIL, modified=dt.datetime(2026, 11, 20, 9, 0))
    zofia = LiveQuery(shop_id, "woocommerce", SINCE, email=EMAIL)
    anna = LiveQuery(shop_id, "woocommerce", SINCE, email=ANNA)
    store.requests.clear()

    lives = truth.LiveReads(woo_runtime.sessions, woo_runtime.settings, {1: zofia, 2: anna}).states([1, 2])

    assert len(window_reads(store)) == 1, "the shared read stopped at its first page (two pages of 100)"
    assert {r.query["search"] for r in store.requests_to("/orders") if "search" in r.query} == {EMAIL, ANNA}
    assert purchase_since(lives[1], zofia).platform_id == "501" and purchase_since(lives[2], anna) is None


def test_when_the_shared_read_fails_the_runs_are_postponed_after_one_more_try_never_assumed_not_bought(
        woo_runtime, shop_id, store):
    from app.automations.truth import LiveReads

    store.add_order(501, email=EMAIL, modified=dt.datetime(2026, 11, 20, 9, 0))
    queries = {run: LiveQuery(shop_id, "woocommerce", SINCE, email=f"k{run}@example.pl") for run in range(1, 6)}
    store.fail_next(503, times=100, path="/orders")
    store.requests.clear()

    lives = LiveReads(woo_runtime.sessions, woo_runtime.settings, queries).states(list(queries))

    assert all(isinstance(live, StoreUnreachable) for live in lives.values())
    assert {r.query["search"] for r in store.requests_to("/orders") if "search" in r.query} == {"k1@example.pl"}, \
        "after the shared read failed, one run's own read is tried; the store is not asked once per run"


def test_a_shared_read_older_than_a_minute_is_taken_again_for_the_runs_still_waiting(woo_runtime, shop_id, store):
    from app.automations.truth import WINDOW_FRESH_SECONDS, LiveReads

    now = [1000.0]
    queries = {run: LiveQuery(shop_id, "woocommerce", SINCE, email=f"k{run}@example.pl") for run in range(1, 6)}
    reads = LiveReads(woo_runtime.sessions, woo_runtime.settings, queries, clock=lambda: now[0])
    store.requests.clear()
    reads.states([1, 2])
    now[0] += 1
    reads.states([3])
    assert len(window_reads(store)) == 1
    store.add_order(501, email="k4@example.pl", modified=dt.datetime(2026, 11, 20, 9, 0))  # bought meanwhile
    now[0] += WINDOW_FRESH_SECONDS

    lives = {**reads.states([4]), **reads.states([5])}

    assert len(window_reads(store)) == 2, "read again once, for runs 4 and 5"
    assert purchase_since(lives[4], queries[4]).platform_id == "501" and purchase_since(lives[5], queries[5]) is None
    assert store.requests_to("/orders") == window_reads(store)
