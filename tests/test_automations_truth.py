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
