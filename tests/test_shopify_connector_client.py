"""Shopify connector over real HTTP to the fake Shopify: tokens, pacing and retries, sync, bulk, write-back."""
from __future__ import annotations

import datetime as dt
import socket
import tracemalloc
from decimal import Decimal

import pytest

from connectors.errors import AmbiguousOutcome, AuthError, ConnectorError, NotFound, RateLimited, TemporaryError
from connectors.records import Money, StoreOrder
from connectors.shopify import API_VERSION, CodeAlreadyExists, OAuthClient, ShopifyClient
from tests.fake_shopify import DEFAULT_LOCATION, FakeClock, FakeShopify, fake_shopify  # noqa: F401 (fixture)

SHOP = "kwiaciarnia-roza.myshopify.com"
TOKEN = "shpat_fake_token"
NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.timezone.utc)
UTC = dt.timezone.utc


class Sleeps(list):
    """Records the waits instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(fake: FakeShopify, token: str = TOKEN, **options) -> ShopifyClient:
    options.setdefault("sleep", Sleeps())
    return ShopifyClient(SHOP, token, base_url=fake.url, **options)


def oauth_for(fake: FakeShopify, sleeps: Sleeps | None = None) -> OAuthClient:
    return OAuthClient(fake.client_id, fake.client_secret, base_url=lambda shop: fake.url,
                       sleep=sleeps if sleeps is not None else Sleeps())


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def tiny_bucket(clock):
    """A shop whose bucket holds 10 points, refills 1 point a second, and where every query costs 4."""
    with FakeShopify(clock=clock.monotonic, maximum_available=10, restore_rate=1, default_cost=4) as fake:
        yield fake


# --- OAuth -------------------------------------------------------------------------------------------

def test_a_code_exchange_returns_an_expiring_offline_token_and_a_refresh_token(fake_shopify):
    tokens = oauth_for(fake_shopify).exchange_code(SHOP, fake_shopify.issue_authorization_code(), NOW)
    assert tokens.access_token.startswith("shpat_") and tokens.refresh_token.startswith("shprt_")
    assert tokens.expires_at == NOW + dt.timedelta(seconds=3600)
    assert tokens.refresh_token_expires_at == NOW + dt.timedelta(seconds=fake_shopify.refresh_token_lifetime)
    sent = fake_shopify.requests[-1]
    assert sent.path == "/admin/oauth/access_token" and sent.body["expiring"] == 1
    assert sent.body["client_id"] == fake_shopify.client_id and sent.body["client_secret"] == fake_shopify.client_secret


def test_the_exchanged_token_opens_the_admin_api(fake_shopify):
    tokens = oauth_for(fake_shopify).exchange_code(SHOP, fake_shopify.issue_authorization_code(), NOW)
    assert client_for(fake_shopify, tokens.access_token).webhook_subscriptions() == []


def test_a_used_authorization_code_is_refused_as_an_auth_error(fake_shopify):
    oauth, code = oauth_for(fake_shopify), fake_shopify.issue_authorization_code()
    oauth.exchange_code(SHOP, code, NOW)
    with pytest.raises(AuthError, match="invalid_request"):
        oauth.exchange_code(SHOP, code, NOW)


def test_a_refresh_rotates_both_tokens(fake_shopify):
    oauth = oauth_for(fake_shopify)
    first = oauth.exchange_code(SHOP, fake_shopify.issue_authorization_code(), NOW)
    later = NOW + dt.timedelta(minutes=55)
    second = oauth.refresh(SHOP, first.refresh_token, later)
    assert second.access_token != first.access_token and second.refresh_token != first.refresh_token
    assert second.expires_at == later + dt.timedelta(seconds=3600)
    assert fake_shopify.requests[-1].body["grant_type"] == "refresh_token"


def test_reusing_a_spent_refresh_token_is_refused_as_an_auth_error(fake_shopify):
    oauth = oauth_for(fake_shopify)
    first = oauth.exchange_code(SHOP, fake_shopify.issue_authorization_code(), NOW)
    oauth.refresh(SHOP, first.refresh_token, NOW)
    with pytest.raises(AuthError, match="invalid_grant"):
        oauth.refresh(SHOP, first.refresh_token, NOW)


def test_the_token_endpoint_is_retried_after_a_server_error_and_honours_retry_after(fake_shopify):
    sleeps = Sleeps()
    fake_shopify.fail_next(503, endpoint="oauth")
    fake_shopify.fail_next(429, headers={"Retry-After": "3"}, endpoint="oauth")
    tokens = oauth_for(fake_shopify, sleeps).exchange_code(SHOP, fake_shopify.issue_authorization_code(), NOW)
    assert tokens.access_token and len(sleeps) == 2 and sleeps[1] == 3.0


def test_a_token_endpoint_that_keeps_failing_gives_a_temporary_error(fake_shopify):
    fake_shopify.fail_next(502, times=10, endpoint="oauth")
    with pytest.raises(TemporaryError):
        oauth_for(fake_shopify).refresh(SHOP, "shprt_whatever", NOW)


def test_an_expired_access_token_is_refused_as_an_auth_error(clock):
    with FakeShopify(clock=clock.monotonic) as fake:
        tokens = oauth_for(fake).exchange_code(SHOP, fake.issue_authorization_code(), NOW)
        clock.sleep(3601)
        with pytest.raises(AuthError, match="Invalid API key or access token"):
            client_for(fake, tokens.access_token).webhook_subscriptions()


# --- GraphQL transport -------------------------------------------------------------------------------

def test_every_call_names_its_operation_and_sends_the_token_to_the_pinned_version(fake_shopify):
    client_for(fake_shopify).webhook_subscriptions()
    sent = fake_shopify.requests[-1]
    assert sent.path == f"/admin/api/{API_VERSION}/graphql.json" and API_VERSION == "2026-01"
    assert sent.headers["X-Shopify-Access-Token"] == TOKEN and sent.operation == "WebhookSubscriptions"


def test_the_api_version_can_be_chosen_by_the_caller(fake_shopify):
    client_for(fake_shopify, api_version="2026-04").webhook_subscriptions()
    assert fake_shopify.requests[-1].path == "/admin/api/2026-04/graphql.json"


def test_a_wrong_access_token_is_an_auth_error(fake_shopify):
    with pytest.raises(AuthError, match="Invalid API key or access token"):
        client_for(fake_shopify, "shpat_revoked").webhook_subscriptions()


def test_the_client_waits_for_the_bucket_to_refill_instead_of_being_throttled(tiny_bucket, clock):
    client = client_for(tiny_bucket, sleep=clock.sleep, clock=clock.monotonic)
    for _ in range(5):
        client.webhook_subscriptions()
    assert tiny_bucket.throttled == 0
    assert clock.sleeps == pytest.approx([2.0, 4.0, 4.0])  # 10 → 6 → 2, then wait for 4 points each time
    assert tiny_bucket.operations() == ["WebhookSubscriptions"] * 5


def test_a_throttled_answer_is_retried_once_enough_points_are_back(tiny_bucket, clock):
    tiny_bucket.drain_bucket()
    client_for(tiny_bucket, sleep=clock.sleep, clock=clock.monotonic).webhook_subscriptions()
    assert tiny_bucket.throttled == 1 and clock.sleeps == pytest.approx([4.0])
    assert tiny_bucket.operations() == ["WebhookSubscriptions"] * 2


def test_a_429_is_retried_after_the_retry_after_it_names(fake_shopify):
    sleeps = Sleeps()
    fake_shopify.fail_next(429, headers={"Retry-After": "2.0"}, body={
        "errors": "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service."})
    assert client_for(fake_shopify, sleep=sleeps).webhook_subscriptions() == []
    assert sleeps == [2.0]


def test_rate_limiting_that_never_ends_is_raised_with_its_retry_after(fake_shopify):
    fake_shopify.fail_next(429, headers={"Retry-After": "7"}, times=10)
    with pytest.raises(RateLimited) as raised:
        client_for(fake_shopify, max_retries=2).webhook_subscriptions()
    assert raised.value.retry_after == 7.0


def test_a_query_is_retried_with_backoff_after_server_errors(fake_shopify):
    sleeps = Sleeps()
    fake_shopify.fail_next(503, times=2)
    assert client_for(fake_shopify, sleep=sleeps).webhook_subscriptions() == []
    assert len(sleeps) == 2 and all(wait > 0 for wait in sleeps)


def test_a_mutation_answered_with_a_server_error_is_not_resent(fake_shopify):
    fake_shopify.fail_next(500)
    with pytest.raises(AmbiguousOutcome):
        client_for(fake_shopify).create_webhook_subscription("orders/create", "https://companion.example.com/wh")
    assert fake_shopify.operations() == ["WebhookSubscriptionCreate"]


def test_an_unreachable_shop_gives_a_temporary_error_even_for_a_mutation_that_never_left():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    sleeps = Sleeps()
    client = ShopifyClient(SHOP, TOKEN, base_url=f"http://127.0.0.1:{closed_port}", sleep=sleeps, max_retries=2)
    with pytest.raises(TemporaryError):
        client.create_webhook_subscription("orders/create", "https://companion.example.com/wh")
    assert len(sleeps) == 2  # refused connections are safe to retry: nothing reached Shopify


def test_graphql_errors_are_raised_with_their_messages(fake_shopify):
    with pytest.raises(ConnectorError, match="does not know operation 'Mystery'"):
        client_for(fake_shopify).graphql("query Mystery { shop { name } }")


def test_a_query_without_an_operation_name_is_refused_before_sending(fake_shopify):
    with pytest.raises(ValueError, match="operation name"):
        client_for(fake_shopify).graphql("{ shop { name } }")
    assert fake_shopify.requests == []


# --- incremental sync --------------------------------------------------------------------------------

def test_orders_are_read_page_by_page_following_the_cursor(fake_shopify):
    for day in range(1, 8):
        fake_shopify.add_order(1000 + day, updated_at=f"2026-11-{day:02d}T10:00:00Z")
    orders = list(client_for(fake_shopify).orders_updated_since(dt.datetime(2026, 11, 2, tzinfo=UTC), page_size=3))
    assert [o.platform_id for o in orders] == ["1002", "1003", "1004", "1005", "1006", "1007"]
    pages = fake_shopify.requests_for("OrdersUpdatedSince")
    assert [p.variables["after"] is None for p in pages] == [True, False]
    assert pages[0].variables["query"] == "updated_at:>='2026-11-02T00:00:00Z'"
    assert all(isinstance(o, StoreOrder) and o.currency == "PLN" and len(o.lines) == 1 for o in orders)


def test_an_order_with_more_lines_than_a_page_carries_is_completed_with_follow_up_reads(fake_shopify):
    fake_shopify.add_order(2001, lines=[{"title": f"Tulipan {i}", "price": "5.50", "quantity": 2} for i in range(12)])
    (order,) = client_for(fake_shopify).orders_updated_since(dt.datetime(2026, 1, 1, tzinfo=UTC))
    assert [line.name for line in order.lines] == [f"Tulipan {i}" for i in range(12)]
    assert order.lines[0].total == Money(Decimal("11.00"), "PLN")
    assert fake_shopify.operations() == ["OrdersUpdatedSince", "OrderLineItems"]


def test_an_order_node_maps_like_its_webhook_payload(fake_shopify):
    customer = fake_shopify.add_customer(115310627314723954)
    fake_shopify.add_order(820982911946154508, customer_id=customer, financial="PARTIALLY_REFUNDED")
    (order,) = client_for(fake_shopify).orders_updated_since(dt.datetime(2026, 1, 1, tzinfo=UTC))
    assert (order.platform_id, order.customer_platform_id) == ("820982911946154508", "115310627314723954")
    assert (order.total, order.shipping_total) == (Money(Decimal("249.90"), "PLN"), Money(Decimal("20.00"), "PLN"))
    assert (order.financial_status, order.status) == ("partially_refunded", "processing")
    assert order.placed_at == dt.datetime(2026, 11, 20, 9, 0, tzinfo=UTC) and order.phone == "+48600111222"
    assert order.shipping_address.city == "Kraków" and order.shipping_method == "InPost Paczkomat"
    assert order.checkout_token is None  # the GraphQL Order has it only from 2026-07


def test_customers_come_with_their_marketing_states(fake_shopify):
    fake_shopify.add_customer(501, email_state="SUBSCRIBED", sms_state="UNSUBSCRIBED")
    (customer,) = client_for(fake_shopify).customers_updated_since(NOW - dt.timedelta(days=1))
    assert (customer.platform_id, customer.email, customer.phone) == ("501", "zofia.nowak@example.pl", "+48600111222")
    assert [(c.channel, c.state, c.platform_state, c.opt_in_level) for c in customer.consents] == [
        ("email", "granted", "SUBSCRIBED", "single_opt_in"), ("sms", "revoked", "UNSUBSCRIBED", None)]
    assert customer.total_spent == Money(Decimal("249.9"), "PLN") and customer.orders_count == 1


def test_abandoned_checkouts_become_carts_keyed_by_the_token_in_their_recovery_url(fake_shopify):
    fake_shopify.add_abandoned_checkout(7001, token="2a1ace52255252df566af0faaedfbfa7")
    (cart,) = client_for(fake_shopify).abandoned_checkouts_updated_since(NOW - dt.timedelta(days=1))
    assert cart.token == "2a1ace52255252df566af0faaedfbfa7" and cart.total == Money(Decimal("229.90"), "PLN")
    assert cart.recovery_url.startswith("https://kwiaciarnia-roza.pl/") and cart.email == "zofia.nowak@example.pl"
    assert [(line.name, line.image_url) for line in cart.lines] == [("Bukiet róż - czerwony", "https://cdn.shopify.com/roza.jpg")]
    assert "sortKey: ID" in fake_shopify.requests_for("AbandonedCheckoutsUpdatedSince")[0].body["query"]


def test_products_carry_price_stock_and_links(fake_shopify):
    fake_shopify.add_product(632910392, inventory=0)
    (product,) = client_for(fake_shopify).products_updated_since(NOW - dt.timedelta(days=1))
    assert (product.platform_id, product.price, product.sku) == ("632910392", Money(Decimal("229.90"), "PLN"), "ROZA-CZ")
    assert (product.stock_status, product.stock_quantity) == ("out_of_stock", 0)
    assert product.url == "https://kwiaciarnia-roza.pl/products/bukiet-roz"


# --- bulk operations ---------------------------------------------------------------------------------

def test_a_bulk_export_is_started_polled_and_streamed_with_lines_under_their_orders(fake_shopify):
    fake_shopify.bulk_polls_before_complete = 2
    fake_shopify.add_order(3001, lines=[{"title": "Róża", "price": "10.00"}, {"title": "Tulipan", "price": "5.00"}])
    fake_shopify.add_order(3002, lines=[{"title": "Storczyk", "price": "80.00"}])
    client = client_for(fake_shopify)
    operation_id = client.start_bulk_query("orders")
    assert [client.bulk_operation(operation_id).status for _ in range(3)] == ["RUNNING", "RUNNING", "COMPLETED"]
    operation = client.bulk_operation(operation_id)
    assert operation.object_count == 5 and operation.error_code is None
    orders = list(client.iter_bulk_records("orders", operation.url))
    assert [(o.platform_id, [line.name for line in o.lines]) for o in orders] == [
        ("3001", ["Róża", "Tulipan"]), ("3002", ["Storczyk"])]
    sent = fake_shopify.requests_for("BulkOperationRunQuery")[0]
    assert "groupObjects: true" in sent.body["query"] and "lineItems" in sent.variables["query"]


def test_the_bulk_file_is_fetched_without_the_shops_access_token(fake_shopify):
    fake_shopify.add_order(3001)
    client = client_for(fake_shopify)
    operation = client.bulk_operation(client.start_bulk_query("orders"))
    list(client.iter_bulk_records("orders", operation.url))
    download = [r for r in fake_shopify.requests if r.path.startswith("/bulk/")][0]
    assert "X-Shopify-Access-Token" not in download.headers


def test_a_bulk_export_since_a_time_only_asks_for_what_changed(fake_shopify):
    fake_shopify.add_customer(1, updated_at="2026-10-01T00:00:00Z")
    fake_shopify.add_customer(2, updated_at="2026-11-19T00:00:00Z")
    client = client_for(fake_shopify)
    operation = client.bulk_operation(client.start_bulk_query("customers", since=dt.datetime(2026, 11, 1, tzinfo=UTC)))
    assert [c.platform_id for c in client.iter_bulk_records("customers", operation.url)] == ["2"]
    assert "updated_at:>='2026-11-01T00:00:00Z'" in fake_shopify.requests_for("BulkOperationRunQuery")[0].variables["query"]


def test_a_second_bulk_export_while_one_runs_is_refused(fake_shopify):
    fake_shopify.bulk_polls_before_complete = 5
    client = client_for(fake_shopify)
    client.start_bulk_query("products")
    with pytest.raises(ConnectorError, match="already in progress"):
        client.start_bulk_query("orders")


def test_a_huge_bulk_file_is_streamed_without_holding_it_in_memory(fake_shopify):
    fake_shopify.add_generated_orders(2000, lines_per_order=3)
    client = client_for(fake_shopify)
    operation = client.bulk_operation(client.start_bulk_query("orders"))
    file_size = sum(len(line) for line in _raw_lines(operation.url))
    tracemalloc.start()
    try:
        count = lines = 0
        for order in client.iter_bulk_records("orders", operation.url):
            count, lines = count + 1, lines + len(order.lines)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (count, lines) == (2000, 6000) and operation.object_count == 8000
    assert peak < file_size / 5, f"peak {peak} bytes for a {file_size}-byte file"


def _raw_lines(url: str):
    import requests

    with requests.get(url, stream=True, timeout=30) as response:
        yield from response.iter_lines()


# --- webhook subscriptions ---------------------------------------------------------------------------

def test_subscriptions_are_created_listed_with_rest_topics_and_deleted(fake_shopify):
    client = client_for(fake_shopify)
    created = client.create_webhook_subscription("orders/create", "https://companion.example.com/webhooks/shopify")
    client.create_webhook_subscription("app/scopes_update", "https://companion.example.com/webhooks/shopify")
    assert [(s.topic, s.uri) for s in client.webhook_subscriptions()] == [
        ("orders/create", "https://companion.example.com/webhooks/shopify"),
        ("app/scopes_update", "https://companion.example.com/webhooks/shopify")]
    assert fake_shopify.requests_for("WebhookSubscriptionCreate")[0].variables == {
        "topic": "ORDERS_CREATE", "webhookSubscription": {"uri": "https://companion.example.com/webhooks/shopify",
                                                          "format": "JSON"}}
    client.delete_webhook_subscription(created)
    assert [s.topic for s in client.webhook_subscriptions()] == ["app/scopes_update"]


def test_a_subscription_shopify_refuses_raises_with_its_reason(fake_shopify):
    fake_shopify.refuse_topic("CUSTOMERS_UPDATE")
    with pytest.raises(ConnectorError, match="not approved to subscribe"):
        client_for(fake_shopify).create_webhook_subscription("customers/update", "https://companion.example.com/wh")


def test_subscribing_the_same_topic_and_address_twice_is_refused(fake_shopify):
    client = client_for(fake_shopify)
    client.create_webhook_subscription("orders/paid", "https://companion.example.com/wh")
    with pytest.raises(ConnectorError, match="already been taken"):
        client.create_webhook_subscription("orders/paid", "https://companion.example.com/wh")


# --- fulfillment -------------------------------------------------------------------------------------

def test_fulfilling_sends_company_number_and_url_once_per_location(fake_shopify):
    warehouse = "gid://shopify/Location/2"
    fake_shopify.add_order(4001, lines=[{"title": "Róża"}, {"title": "Wazon"}, {"title": "Kartka"}], fulfillment_orders=[
        {"location": DEFAULT_LOCATION, "lines": [0]}, {"location": DEFAULT_LOCATION, "lines": [1]},
        {"location": warehouse, "lines": [2]}, {"location": warehouse, "lines": [], "status": "CLOSED"}])
    ids = client_for(fake_shopify).fulfill_order(
        "4001", tracking_company="InPost", tracking_number="520000011234567890123456",
        tracking_url="https://inpost.pl/sledzenie-przesylek?number=520000011234567890123456", notify_customer=True)
    assert len(ids) == 2 and all(i.isdigit() for i in ids)
    assert [len(f["fulfillment_order_ids"]) for f in fake_shopify.fulfillments] == [2, 1]
    for sent in fake_shopify.requests_for("FulfillmentCreate"):
        fulfillment = sent.variables["fulfillment"]
        assert fulfillment["trackingInfo"] == {
            "company": "InPost", "number": "520000011234567890123456",
            "url": "https://inpost.pl/sledzenie-przesylek?number=520000011234567890123456"}
        assert fulfillment["notifyCustomer"] is True


def test_an_order_with_nothing_left_to_fulfil_gives_no_fulfillments(fake_shopify):
    fake_shopify.add_order(4002)
    client = client_for(fake_shopify)
    tracking = dict(tracking_company="FAN Courier", tracking_number="2150000123456",
                    tracking_url="https://www.fancourier.ro/awb-tracking/?awb=2150000123456", notify_customer=False)
    assert len(client.fulfill_order("4002", **tracking)) == 1
    assert client.fulfill_order("4002", **tracking) == []


def test_fulfilling_an_unknown_order_is_not_found(fake_shopify):
    with pytest.raises(NotFound):
        client_for(fake_shopify).fulfill_order("999", tracking_company="DPD", tracking_number="1",
                                                tracking_url="https://tracktrace.dpd.com.pl/parcelDetails?p1=1",
                                                notify_customer=False)


# --- discount codes ----------------------------------------------------------------------------------

def test_a_recovery_code_is_single_use_and_bound_to_its_customer(fake_shopify):
    discount_id = client_for(fake_shopify).create_discount_code(
        code="WRACAJ-7F3K9Q", title="Recovery WRACAJ-7F3K9Q", percentage=Decimal("10"),
        customer_id="115310627314723954", starts_at=NOW, ends_at=NOW + dt.timedelta(days=7))
    assert discount_id.isdigit()
    sent = fake_shopify.requests_for("DiscountCodeBasicCreate")[0].variables["basicCodeDiscount"]
    assert (sent["usageLimit"], sent["appliesOncePerCustomer"]) == (1, True)
    assert sent["context"] == {"customers": {"add": ["gid://shopify/Customer/115310627314723954"]}}
    assert sent["customerGets"] == {"value": {"percentage": 0.1}, "items": {"all": True}}
    assert (sent["startsAt"], sent["endsAt"]) == ("2026-11-20T09:00:00+00:00", "2026-11-27T09:00:00+00:00")


def test_a_fixed_amount_code_for_anyone_sends_the_amount_and_all_buyers(fake_shopify):
    client_for(fake_shopify).create_discount_code(
        code="LEI-20", title="Recovery LEI-20", amount=Money(Decimal("20.00"), "RON"), customer_id=None,
        starts_at=NOW, ends_at=NOW + dt.timedelta(days=3))
    sent = fake_shopify.requests_for("DiscountCodeBasicCreate")[0].variables["basicCodeDiscount"]
    assert sent["customerGets"]["value"] == {"discountAmount": {"amount": "20.00", "appliesOnEachItem": False}}
    assert sent["context"] == {"all": "ALL"}


def test_a_code_that_already_exists_raises_code_already_exists(fake_shopify):
    client = client_for(fake_shopify)
    options = dict(code="WRACAJ-7F3K9Q", title="Recovery", percentage=Decimal("15"), customer_id=None,
                   starts_at=NOW, ends_at=NOW + dt.timedelta(days=7))
    client.create_discount_code(**options)
    with pytest.raises(CodeAlreadyExists, match="Code must be unique"):
        client.create_discount_code(**options)


def test_a_discount_needs_exactly_one_of_percentage_and_amount(fake_shopify):
    with pytest.raises(ValueError):
        client_for(fake_shopify).create_discount_code(code="X", title="X", customer_id=None, starts_at=NOW,
                                                      ends_at=NOW + dt.timedelta(days=1))
    assert fake_shopify.requests == []
