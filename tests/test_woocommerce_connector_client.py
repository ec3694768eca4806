"""WooCommerce client over real HTTP to the fake shop: auth, discovery, sync, retries, webhooks, write-back."""
from __future__ import annotations

import datetime as dt
import itertools
import json
import socket
import time
import tracemalloc
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.errors import (
    AmbiguousOutcome, AuthError, ConnectorError, InvalidPayload, NotFound, RateLimited, TemporaryError, UnsafeURL,
)
from connectors.http import UrlPolicy
from connectors.records import Money
from connectors.woocommerce import (
    SUBSCRIPTION_TOPICS, CouponCodeTaken, Credentials, RetryPolicy, UnsupportedTopic, WebhookDelivery,
    WooCommerceClient, cart_from_abandoned_cart_lite, dedupe_key, modified_at, parse_body, parse_callback,
    ping_webhook_id, plan_webhooks, verify_webhook,
)
from tests.fake_woocommerce import (  # noqa: F401 (fixture)
    CONSUMER_KEY, CONSUMER_SECRET, FakeWooCommerce, RawJSON, fake_woocommerce,
)

UTC = dt.timezone.utc
SECRET = "k9Zq2Lr7Vx4Tn8Ws1Py6Hm3Jd5Fb0Gc"
HOOK_URL = "https://companion.example/webhooks/woocommerce/t0ken"


class Sleeps(list):
    """Records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(fake: FakeWooCommerce, credentials: Credentials | None = None, **options) -> WooCommerceClient:
    options.setdefault("sleep", Sleeps())
    options.setdefault("policy", UrlPolicy(allow_private=True))
    return WooCommerceClient(fake.url, credentials or Credentials(CONSUMER_KEY, CONSUMER_SECRET), **options)


def minute(n: int) -> dt.datetime:
    return dt.datetime(2026, 11, 20, 9, 0) + dt.timedelta(minutes=n)


@pytest.fixture
def ssl_shop():
    with FakeWooCommerce(is_ssl=True) as fake:
        yield fake


@pytest.fixture
def plain_shop():
    """A shop with neither a tracking plugin nor the Store API."""
    with FakeWooCommerce(tracking_plugin=None, store_api=False) as fake:
        yield fake


# --- authentication -------------------------------------------------------------------------------------

def test_calls_to_a_plain_http_shop_are_signed_with_oauth_and_accepted(fake_woocommerce):
    client_for(fake_woocommerce).check_credentials()
    sent = fake_woocommerce.requests[-1]
    assert sent.query["oauth_signature_method"] == "HMAC-SHA256" and "authorization" not in sent.headers
    assert "consumer_secret" not in sent.query


def test_a_query_with_slash_space_and_unicode_is_accepted_by_the_shops_oauth_check(fake_woocommerce):
    client = client_for(fake_woocommerce)
    response = client.request("GET", "products", params={"search": "róża/czerwona 50 cm", "sku": "A/B+C"})
    assert response.status == 200
    assert fake_woocommerce.requests[-1].query["search"] == "róża/czerwona 50 cm"


def test_a_wrong_secret_is_an_auth_error_that_points_at_the_signature(fake_woocommerce):
    client = client_for(fake_woocommerce, Credentials(CONSUMER_KEY, "cs_wrong"))
    with pytest.raises(AuthError, match="signature"):
        client.check_credentials()


def test_each_attempt_is_signed_with_a_fresh_nonce(fake_woocommerce):
    fake_woocommerce.fail_next(503, path="/orders")
    client_for(fake_woocommerce).check_credentials()
    nonces = [r.query["oauth_nonce"] for r in fake_woocommerce.requests_to("/orders")]
    assert len(nonces) == 2 and nonces[0] != nonces[1]


def test_a_clock_far_from_the_shops_is_refused_with_a_hint_about_timestamps(fake_woocommerce):
    client = client_for(fake_woocommerce, clock=lambda: time.time() - 3600)
    with pytest.raises(AuthError, match="15 minutes"):
        client.check_credentials()


def test_basic_auth_is_accepted_by_a_shop_that_sees_https(ssl_shop):
    client_for(ssl_shop, auth="basic").check_credentials()
    assert ssl_shop.requests[-1].headers["authorization"].startswith("Basic ")


def test_basic_credentials_ignored_by_a_shop_that_does_not_see_https_give_an_auth_error_with_a_hint(fake_woocommerce):
    with pytest.raises(AuthError, match="ignored the Basic credentials"):
        client_for(fake_woocommerce, auth="basic").check_credentials()


def test_query_string_keys_work_where_the_server_strips_the_authorization_header(ssl_shop):
    client_for(ssl_shop, auth="query").check_credentials()
    assert ssl_shop.requests[-1].query["consumer_key"] == CONSUMER_KEY


def test_basic_auth_over_plain_http_is_refused_in_production():
    with pytest.raises(ValueError, match="clear"):
        WooCommerceClient("http://sklep.example", Credentials("ck_a", "cs_b"), auth="basic")


def test_a_loopback_store_url_is_refused_in_production(fake_woocommerce):
    client = WooCommerceClient(fake_woocommerce.url, Credentials(CONSUMER_KEY, CONSUMER_SECRET))
    with pytest.raises(UnsafeURL):
        client.check_credentials()
    assert fake_woocommerce.requests == []


def test_a_redirect_is_reported_and_not_followed(fake_woocommerce):
    fake_woocommerce.fail_next(301, body={}, headers={"Location": "https://www.sklep.example/wp-json/wc/v3/orders"})
    with pytest.raises(ConnectorError, match="redirected to 'https://www.sklep.example"):
        client_for(fake_woocommerce).check_credentials()
    assert len(fake_woocommerce.requests) == 1


def test_a_read_only_key_cannot_change_an_order(fake_woocommerce):
    fake_woocommerce.add_key("ck_readonly", "cs_readonly", "read")
    order = fake_woocommerce.add_order()
    with pytest.raises(AuthError, match="write permissions"):
        client_for(fake_woocommerce, Credentials("ck_readonly", "cs_readonly")).set_order_status(order["id"], "completed")
    assert fake_woocommerce.orders[order["id"]]["status"] == "processing"


def test_keys_posted_to_the_wc_auth_callback_open_the_api(fake_woocommerce):
    fake_woocommerce.add_key("ck_granted0123", "cs_granted0123", "read_write")
    body = json.dumps({"key_id": 7, "user_id": "state-9f8e", "consumer_key": "ck_granted0123",
                       "consumer_secret": "cs_granted0123", "key_permissions": "read_write"}).encode()
    granted = parse_callback(body, expected_user_id="state-9f8e")
    client_for(fake_woocommerce, granted.credentials).check_credentials()


# --- discovery --------------------------------------------------------------------------------------------

def test_discovery_reads_the_namespaces_without_sending_the_key(fake_woocommerce):
    capabilities = client_for(fake_woocommerce).discover()
    assert capabilities.rest_api and capabilities.shipment_tracking and capabilities.advanced_shipment_tracking
    assert capabilities.store_api and capabilities.timezone == "Europe/Warsaw"
    assert capabilities.home_url == fake_woocommerce.url
    sent = fake_woocommerce.requests[-1]
    assert sent.path == "/wp-json/" and not any(k.startswith("oauth_") for k in sent.query)


def test_a_shop_without_plugins_reports_neither_tracking_nor_store_api(plain_shop):
    capabilities = client_for(plain_shop).discover()
    assert capabilities.rest_api and not capabilities.shipment_tracking and not capabilities.store_api
    assert capabilities.abandoned_cart_namespaces == ()


# --- sync -------------------------------------------------------------------------------------------------

def test_orders_are_asked_for_modified_after_the_cursor_in_gmt_oldest_change_first(fake_woocommerce):
    for n, order_id in [(5, 101), (1, 102), (30, 103), (-10, 104)]:
        fake_woocommerce.add_order(order_id, modified=minute(n))
    orders = list(client_for(fake_woocommerce).orders_modified_since(minute(0).replace(tzinfo=UTC)))
    assert [o.platform_id for o in orders] == ["102", "101", "103"]
    query = fake_woocommerce.requests_to("/orders")[0].query
    assert {k: query[k] for k in ("orderby", "order", "per_page", "dates_are_gmt", "modified_after")} == {
        "orderby": "modified", "order": "asc", "per_page": "100", "dates_are_gmt": "true",
        "modified_after": "2026-11-20T09:00:00"}
    assert "line_items" in query["_fields"].split(",")


def test_all_pages_are_read_in_order_with_two_to_four_requests_in_flight(fake_woocommerce):
    for n in range(250):
        fake_woocommerce.add_order(10_000 + n, modified=minute(n))
    fake_woocommerce.response_delay = 0.02
    ids = [o.platform_id for o in client_for(fake_woocommerce, concurrency=3).orders_modified_since(None, page_size=10)]
    assert ids == [str(10_000 + n) for n in range(250)]
    assert 2 <= fake_woocommerce.max_in_flight <= 3


def test_sync_progress_is_reported_page_by_page(fake_woocommerce):
    for n in range(25):
        fake_woocommerce.add_order(modified=minute(n))
    pages = []
    list(client_for(fake_woocommerce).orders_modified_since(None, page_size=10, on_page=pages.append))
    assert [(p.page, p.total_pages, p.total_items, p.items_on_page) for p in pages] == \
        [(1, 3, 25, 10), (2, 3, 25, 10), (3, 3, 25, 5)]


def test_a_listing_is_streamed_so_stopping_early_leaves_later_pages_unfetched(fake_woocommerce):
    for n in range(200):
        fake_woocommerce.add_order(modified=minute(n))
    stream = client_for(fake_woocommerce, concurrency=2).orders_modified_since(None, page_size=10)
    first = list(itertools.islice(stream, 5))
    stream.close()
    assert len(first) == 5 and len(fake_woocommerce.requests_to("/orders")) <= 4


def test_a_large_sync_is_streamed_with_memory_bounded_by_the_pages_in_flight(fake_woocommerce):
    fake_woocommerce.add_generated_orders(4000)  # ~22 MB if every mapped order were held at once
    client = client_for(fake_woocommerce)
    tracemalloc.start()
    try:
        last, count = None, 0
        for order in client.orders_modified_since(None):
            last, count = order, count + 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 4000 and last.platform_id == "50003999"
    assert peak < 12_000_000


def test_an_incremental_sync_starts_after_the_cursor(fake_woocommerce):
    fake_woocommerce.add_generated_orders(500, start=dt.datetime(2026, 1, 1))
    since = dt.datetime(2026, 1, 1, 0, 5, tzinfo=UTC)  # order 300 changed at exactly 00:05:00
    ids = [o.platform_id for o in client_for(fake_woocommerce).orders_modified_since(since)]
    assert ids[0] == "50000301" and len(ids) == 199


def test_a_page_size_above_what_woocommerce_accepts_is_refused_before_calling(fake_woocommerce):
    with pytest.raises(ValueError, match="per_page"):
        list(client_for(fake_woocommerce).orders_modified_since(None, page_size=101))
    assert fake_woocommerce.requests == []


def test_a_server_error_on_a_page_is_retried_after_a_jittered_backoff(fake_woocommerce):
    for n in range(3):
        fake_woocommerce.add_order(modified=minute(n))
    fake_woocommerce.fail_next(502, path="/orders")
    sleeps = Sleeps()
    orders = list(client_for(fake_woocommerce, sleep=sleeps).orders_modified_since(None))
    assert len(orders) == 3 and len(sleeps) == 1 and 0.5 <= sleeps[0] <= 1.0


def test_a_page_too_heavy_for_the_shop_is_fetched_again_in_smaller_pages(fake_woocommerce):
    for n in range(300):
        fake_woocommerce.add_order(20_000 + n, modified=minute(n))
    fake_woocommerce.fail_next(503, times=5, path="/orders", query={"per_page": 100, "page": 2})
    ids = [o.platform_id for o in client_for(fake_woocommerce).orders_modified_since(None)]
    assert ids == [str(20_000 + n) for n in range(300)]
    halves = sorted(int(r.query["page"]) for r in fake_woocommerce.requests_to("/orders") if r.query["per_page"] == "50")
    assert halves == [3, 4, 5, 6]  # the first 100 arrived; the other 200 came as four pages of 50


def test_a_429_waits_as_long_as_retry_after_says(fake_woocommerce):
    fake_woocommerce.fail_next(429, headers={"Retry-After": "7"}, path="/orders")
    sleeps = Sleeps()
    client_for(fake_woocommerce, sleep=sleeps).check_credentials()
    assert sleeps == [7.0]


def test_a_retry_after_longer_than_the_policy_allows_gives_rate_limited_at_once(fake_woocommerce):
    fake_woocommerce.fail_next(429, headers={"Retry-After": "3600"}, path="/orders")
    with pytest.raises(RateLimited) as caught:
        client_for(fake_woocommerce).check_credentials()
    assert caught.value.retry_after == 3600.0 and len(fake_woocommerce.requests) == 1


def test_a_page_that_keeps_failing_gives_a_temporary_error_after_the_last_attempt(fake_woocommerce):
    fake_woocommerce.fail_next(503, times=10, path="/orders")
    sleeps = Sleeps()
    with pytest.raises(TemporaryError):
        client_for(fake_woocommerce, sleep=sleeps, retry=RetryPolicy(max_attempts=3)).check_credentials()
    assert len(fake_woocommerce.requests) == 3 and len(sleeps) == 2


def test_an_unknown_order_is_not_found_with_woocommerces_error_code(fake_woocommerce):
    with pytest.raises(NotFound) as caught:
        client_for(fake_woocommerce).get_order(999_999)
    assert caught.value.code == "woocommerce_rest_shop_order_invalid_id"


def test_checkout_drafts_are_polled_as_carts(fake_woocommerce):
    fake_woocommerce.add_order(501, status="checkout-draft", created_via="store-api", paid=False, modified=minute(3))
    fake_woocommerce.add_order(502, status="processing", modified=minute(4))
    carts = list(client_for(fake_woocommerce).checkout_draft_orders(minute(0).replace(tzinfo=UTC)))
    assert [c.token for c in carts] == ["checkout-draft:501"]
    assert carts[0].recovery_url == f"{fake_woocommerce.url}/checkout/?add-to-cart=93&quantity=1"
    assert fake_woocommerce.requests_to("/orders")[0].query["status"] == "checkout-draft"


def test_refunds_are_listed_across_orders_with_their_order(fake_woocommerce):
    order = fake_woocommerce.add_order(601)
    fake_woocommerce.add_refund(601, "50.00", created=dt.datetime(2026, 11, 21, 10, 0))
    refunds = list(client_for(fake_woocommerce).refunds_since(minute(0).replace(tzinfo=UTC), "PLN"))
    assert [(r.order_platform_id, r.amount) for r in refunds] == [("601", Money(Decimal("50.00"), "PLN"))]
    assert client_for(fake_woocommerce).order_refunds(order["id"], "PLN")[0].platform_id == refunds[0].platform_id


def test_customers_changed_before_the_cursor_are_left_out(fake_woocommerce):
    fake_woocommerce.add_customer(31, modified=minute(-30))
    fake_woocommerce.add_customer(32, email="jan@example.pl", modified=minute(30))
    customers = list(client_for(fake_woocommerce).customers(since=minute(0).replace(tzinfo=UTC)))
    assert [c.platform_id for c in customers] == ["32"] and customers[0].phone == "+48600111222"


def test_products_are_re_read_by_id_for_fresh_stock(fake_woocommerce):
    fake_woocommerce.add_product(71, stock_status="outofstock")
    fake_woocommerce.add_product(72)
    products = {p.platform_id: p for p in client_for(fake_woocommerce).products_by_id([71, 72], "PLN")}
    assert products["71"].purchasable is False and products["72"].purchasable is True


def test_the_cursor_is_compared_in_utc_not_in_the_shops_local_time(fake_woocommerce):
    fake_woocommerce.add_order(801, modified=minute(30))  # 09:30 UTC is 10:30 in the shop
    since = dt.datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    assert [o.platform_id for o in client_for(fake_woocommerce).orders_modified_since(since)] == []
    since = dt.datetime(2026, 11, 20, 9, 15, tzinfo=UTC)
    assert [o.platform_id for o in client_for(fake_woocommerce).orders_modified_since(since)] == ["801"]


# --- webhooks -----------------------------------------------------------------------------------------------

def test_a_webhook_is_created_with_our_secret_and_its_deliveries_verify(fake_woocommerce):
    hook = client_for(fake_woocommerce).create_webhook("order.updated", HOOK_URL, SECRET)
    order = fake_woocommerce.add_order(901)
    body, headers = fake_woocommerce.delivery(hook.id, order)
    assert hook.status == "active" and fake_woocommerce.requests[-1].body["secret"] == SECRET
    assert verify_webhook(body, headers["X-WC-Webhook-Signature"], [SECRET])
    assert WebhookDelivery.from_headers(headers).webhook_id == str(hook.id)


def test_the_ping_after_creating_a_webhook_is_recognised(fake_woocommerce):
    hook = client_for(fake_woocommerce).create_webhook("order.created", HOOK_URL, SECRET)
    assert ping_webhook_id(*fake_woocommerce.ping(hook.id)) == hook.id


def test_abandoned_cart_lite_topics_are_refused_when_the_plugin_is_absent(fake_woocommerce):
    with pytest.raises(UnsupportedTopic):
        client_for(fake_woocommerce).create_webhook("wcap_cart.cutoff", HOOK_URL, SECRET)


def test_abandoned_cart_lite_topics_are_subscribed_when_the_plugin_is_present(fake_woocommerce):
    fake_woocommerce.install_abandoned_cart_lite()
    assert client_for(fake_woocommerce).create_webhook("wcap_cart.cutoff", HOOK_URL, SECRET).topic == "wcap_cart.cutoff"


def test_a_webhook_disabled_after_failed_deliveries_is_found_re_enabled_and_the_gap_backfilled(fake_woocommerce):
    client = client_for(fake_woocommerce)
    hooks = {topic: client.create_webhook(topic, HOOK_URL, SECRET) for topic in SUBSCRIPTION_TOPICS}
    fake_woocommerce.fail_deliveries(hooks["order.updated"].id, 7)  # WooCommerce disables on the 7th failure
    fake_woocommerce.add_order(950, modified=minute(45))  # changed while nothing was delivered
    disabled = client.webhooks(status="disabled")
    plan = plan_webhooks(client.webhooks(), SUBSCRIPTION_TOPICS, HOOK_URL)
    assert [h.id for h in disabled] == [hooks["order.updated"].id] and plan.gap_suspected
    assert client.enable_webhook(plan.to_enable[0].id).status == "active"
    assert plan_webhooks(client.webhooks(), SUBSCRIPTION_TOPICS, HOOK_URL).healthy
    backfill = [o.platform_id for o in client.orders_modified_since(minute(30).replace(tzinfo=UTC))]
    assert backfill == ["950"]


def test_deleting_a_webhook_forces_it_and_a_missing_one_counts_as_deleted(fake_woocommerce):
    client = client_for(fake_woocommerce)
    hook = client.create_webhook("order.created", HOOK_URL, SECRET)
    client.delete_webhook(hook.id)
    client.delete_webhook(hook.id)
    assert fake_woocommerce.webhooks == {}
    assert fake_woocommerce.requests_to(f"/webhooks/{hook.id}", "DELETE")[0].query["force"] == "true"


def test_an_out_of_order_older_delivery_is_recognisable_as_stale(fake_woocommerce):
    hook = client_for(fake_woocommerce).create_webhook("order.updated", HOOK_URL, SECRET)
    order = fake_woocommerce.add_order(960, status="processing", modified=minute(1))
    older, older_headers = fake_woocommerce.delivery(hook.id, dict(order), delivered_at=1795684800.2)
    fake_woocommerce.touch_order(960, minute(2), status="completed")
    newer, newer_headers = fake_woocommerce.delivery(hook.id, dict(fake_woocommerce.orders[960]),
                                                   delivered_at=1795684800.7)
    assert older_headers["X-WC-Webhook-Delivery-ID"] == newer_headers["X-WC-Webhook-Delivery-ID"]
    delivery = WebhookDelivery.from_headers(newer_headers)
    assert dedupe_key(delivery, older) != dedupe_key(delivery, newer)
    assert modified_at(json.loads(older)) < modified_at(json.loads(newer))


# --- write-back ----------------------------------------------------------------------------------------------

def test_tracking_is_posted_once_even_when_asked_twice(fake_woocommerce):
    order = fake_woocommerce.add_order(1001)
    client = client_for(fake_woocommerce)
    first, created = client.add_tracking(order["id"], "InPost", "620000111222333444555666")
    again, created_again = client.add_tracking(order["id"], "InPost", "620000111222333444555666")
    assert created and not created_again and again.tracking_id == first.tracking_id
    assert len(fake_woocommerce.trackings[1001]) == 1
    posts = fake_woocommerce.requests_to("/shipment-trackings", "POST")
    assert len(posts) == 1 and posts[0].body["replace_tracking"] == 1


def test_a_lost_answer_to_a_tracking_post_is_checked_not_posted_again(fake_woocommerce):
    fake_woocommerce.add_order(1002)
    fake_woocommerce.fail_next(502, path="/shipment-trackings", method="POST", apply_first=True)
    item, created = client_for(fake_woocommerce).add_tracking(1002, "DPD", "0000123456789")
    assert item.number == "0000123456789" and not created
    assert len(fake_woocommerce.trackings[1002]) == 1


def test_a_carrier_the_plugin_does_not_know_goes_with_its_own_tracking_link(fake_woocommerce):
    fake_woocommerce.add_order(1003)
    item, _ = client_for(fake_woocommerce).add_tracking(1003, "FAN Courier", "2150000123",
                                                         "https://www.fancourier.ro/awb-tracking/?awb=2150000123")
    sent = fake_woocommerce.requests_to("/shipment-trackings", "POST")[0].body
    assert sent["custom_tracking_provider"] == "FAN Courier" and "tracking_provider" not in sent
    assert item.link == "https://www.fancourier.ro/awb-tracking/?awb=2150000123"


def test_without_a_tracking_plugin_the_number_goes_into_one_internal_order_note(plain_shop):
    plain_shop.add_order(1004)
    client = client_for(plain_shop)
    capabilities = client.discover()
    first = client.write_tracking(1004, "InPost", "6200001", "https://inpost.pl/sledzenie?number=6200001",
                                  capabilities=capabilities)
    second = client.write_tracking(1004, "InPost", "6200001", "https://inpost.pl/sledzenie?number=6200001",
                                   capabilities=capabilities)
    assert first.via == "order_note" and first.created and not second.created
    assert len(plain_shop.notes[1004]) == 1 and plain_shop.notes[1004][0]["customer_note"] is False


def test_with_a_tracking_plugin_write_tracking_uses_it_and_adds_no_note_of_its_own(fake_woocommerce):
    fake_woocommerce.add_order(1005)
    client = client_for(fake_woocommerce)
    result = client.write_tracking(1005, "InPost", "6200002", capabilities=client.discover())
    assert result.via == "shipment_tracking" and result.created
    assert fake_woocommerce.requests_to("/notes", "POST") == []


def test_an_order_is_marked_completed(fake_woocommerce):
    fake_woocommerce.add_order(1006)
    order = client_for(fake_woocommerce).set_order_status(1006, "completed")
    assert order.status == "completed" and fake_woocommerce.orders[1006]["status"] == "completed"


def test_a_recovery_coupon_is_lowercase_single_use_and_bound_to_the_email(fake_woocommerce):
    coupon = client_for(fake_woocommerce).create_coupon(
        "WROC-7F3K9Q", percent=10, email_restrictions=["Zofia.Nowak@example.pl"],
        expires_at=dt.datetime(2026, 12, 1, tzinfo=UTC), meta={"_companion_campaign": "abandoned_cart:123"})
    sent = fake_woocommerce.requests_to("/coupons", "POST")[0].body
    assert coupon.created and coupon.code == "wroc-7f3k9q" and coupon.usage_limit == 1
    assert sent["email_restrictions"] == ["zofia.nowak@example.pl"] and sent["date_expires_gmt"] == "2026-12-01T00:00:00"
    assert sent["discount_type"] == "percent" and sent["usage_limit_per_user"] == 1


def test_creating_the_same_coupon_again_returns_the_existing_one(fake_woocommerce):
    client = client_for(fake_woocommerce)
    first = client.create_coupon("wroc-1", amount=Money(Decimal("20"), "PLN"), email_restrictions=["a@example.pl"])
    second = client.create_coupon("wroc-1", amount=Money(Decimal("20"), "PLN"), email_restrictions=["a@example.pl"])
    assert second.id == first.id and not second.created and len(fake_woocommerce.coupons) == 1


def test_a_lost_answer_to_a_coupon_create_is_retried_and_resolves_to_the_coupon_made(fake_woocommerce):
    fake_woocommerce.fail_next(502, path="/coupons", method="POST", apply_first=True)
    coupon = client_for(fake_woocommerce).create_coupon("wroc-2", percent=15, email_restrictions=["b@example.pl"])
    assert coupon.code == "wroc-2" and len(fake_woocommerce.coupons) == 1


def test_a_code_already_used_by_a_different_coupon_is_refused(fake_woocommerce):
    client = client_for(fake_woocommerce)
    client.create_coupon("wroc-3", percent=15, email_restrictions=["b@example.pl"])
    with pytest.raises(CouponCodeTaken):
        client.create_coupon("wroc-3", percent=15, email_restrictions=["someone.else@example.pl"])


def test_the_client_has_no_way_to_create_refunds():
    writers = [name for name in dir(WooCommerceClient) if "refund" in name.lower()]
    assert writers == ["order_refunds", "refunds_since"]


# --- failures that must not be mistaken for success --------------------------------------------------------

def test_a_site_that_is_not_wordpress_fails_discovery_as_an_invalid_payload(fake_woocommerce):
    fake_woocommerce.fail_next(200, body={"hello": "world"}, path="/wp-json/")
    with pytest.raises(InvalidPayload, match="not a WordPress REST index"):
        client_for(fake_woocommerce).discover()


def test_an_html_page_answered_with_200_is_an_invalid_payload(fake_woocommerce):
    fake_woocommerce.fail_next(200, body=RawJSON(b"<html>Maintenance</html>"), path="/orders")
    with pytest.raises(InvalidPayload, match="not JSON"):
        client_for(fake_woocommerce).check_credentials()


def test_a_note_whose_post_failed_with_a_server_error_is_ambiguous_not_posted_twice(fake_woocommerce):
    fake_woocommerce.add_order(1101)
    fake_woocommerce.fail_next(500, path="/notes", method="POST")
    with pytest.raises(AmbiguousOutcome):
        client_for(fake_woocommerce).add_order_note(1101, "Companion: tracking 6200001")
    assert len(fake_woocommerce.requests_to("/notes", "POST")) == 1


def test_a_refused_connection_is_retried_and_then_reported_as_temporary():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleeps = Sleeps()
    client = WooCommerceClient(f"http://127.0.0.1:{port}", Credentials(CONSUMER_KEY, CONSUMER_SECRET),
                               policy=UrlPolicy(allow_private=True), sleep=sleeps, retry=RetryPolicy(max_attempts=3))
    with pytest.raises(TemporaryError, match="ConnectionError"):
        client.check_credentials()
    assert len(sleeps) == 2


def test_an_abandoned_cart_lite_delivery_verifies_and_maps_to_a_cart(fake_woocommerce):
    fake_woocommerce.install_abandoned_cart_lite()
    hook = client_for(fake_woocommerce).create_webhook("wcap_cart.cutoff", HOOK_URL, SECRET)
    cutoff = json.loads((Path(__file__).parent / "fixtures" / "woocommerce" / "wcap_cart_cutoff.json").read_bytes())
    body, headers = fake_woocommerce.delivery(hook.id, cutoff)
    delivery = WebhookDelivery.from_headers(headers)
    assert verify_webhook(body, delivery.signature, [SECRET])
    assert (delivery.resource, delivery.event) == ("wcap_cart", "cutoff")
    cart = cart_from_abandoned_cart_lite(parse_body(body), "PLN")
    assert cart.token == "wcal:17" and cart.email == "ana.popescu@example.ro"
