"""The public `/s/...` endpoints over real HTTP: what each stores, and what each refuses and why."""
from __future__ import annotations

import datetime as dt
import json
import secrets
import socket
import time
from decimal import Decimal
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests
from sqlalchemy import func, select

from app.jobs import registry
from app.models import (
    Cart,
    CartLine,
    Consent,
    Customer,
    DoubleOptIn,
    Job,
    PushOptIn,
    PushSubscription,
    RateLimitCounter,
    StorefrontEvent,
    StorefrontVisitor,
)
from app.storefront import cart_links, guard, optin, ratelimit
from app.storefront.app_proxy import sign_proxy_query, verify_proxy_query
from app.storefront.optin import confirmation_url
from app.tenancy import shop_context
from tests.conftest import REDIS_URL, require
from tests.factories import make_customer, make_shop
from tests.storefront_site import ServedApp

DOMAIN = "sklep.example.pl"
ORIGIN = f"https://{DOMAIN}"
VISITOR = "v1a2b3c4d5e6f7g8h9i0"
FORM = {"id": "newsletter", "type": "exit_intent", "consent_version": "nl-2026-11"}
SHOPIFY_SECRET = "hush"


def storefront_settings(**extra) -> dict:
    return {"storefront": {"forms": [FORM], **extra}, "storefront_domains": ["www.sklep.example.pl"]}


@pytest.fixture
def limits() -> dict[str, str]:
    return {}


@pytest.fixture
def served(make_settings, limits):
    from app import create_app

    app = create_app(make_settings(SHOPIFY_API_KEY="client-id", SHOPIFY_API_SECRET=SHOPIFY_SECRET, **limits))
    server = ServedApp(app)
    server.app, server.runtime = app, app.extensions["companion"]
    yield server
    server.close()
    server.runtime.close()


@pytest.fixture
def shop(served):
    with served.runtime.sessions.begin() as session:
        made = make_shop(session, DOMAIN, platform="woocommerce", locale="pl", settings=storefront_settings())
        return {"id": made.id, "key": made.public_key}


@pytest.fixture
def shopify_shop(served):
    with served.runtime.sessions.begin() as session:
        made = make_shop(session, "kubki.myshopify.com", platform="shopify",
                         settings={"storefront_domains": ["kubki.pl"], "storefront": {"forms": [FORM]}})
        return {"id": made.id, "key": made.public_key}


def post(served, path: str, key: str, body, origin: str | None = ORIGIN, method: str = "POST", **headers):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    if origin:
        headers["Origin"] = origin
    headers.setdefault("Content-Type", "text/plain;charset=UTF-8")
    return requests.request(method, f"{served.url}/s/{path}", params={"k": key}, data=data, headers=headers, timeout=10)


def rows(served, shop_id: int, model, *where):
    with served.runtime.sessions() as session, shop_context(shop_id):
        return session.scalars(select(model).where(*where).order_by(model.id)).all()


def count(served, model) -> int:
    with served.runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).execution_options(all_shops=True))


def page_view(url: str = f"{ORIGIN}/", **extra) -> dict:
    return {"type": "page_view", "url": url, **extra}


WOO_CART = {
    "items": [{"key": "c74d97b0", "id": 12, "quantity": 2, "name": "Kubek", "sku": "MUG-1",
               "permalink": f"{ORIGIN}/product/mug", "images": [{"src": f"{ORIGIN}/mug.jpg"}],
               "prices": {"price": "2999", "currency_code": "PLN", "currency_minor_unit": 2}}],
    "totals": {"total_price": "5998", "currency_code": "PLN", "currency_minor_unit": 2},
    "billing_address": {"email": ""},
}


# --- events -----------------------------------------------------------------------------------------------

def test_events_from_the_shops_own_site_are_stored_and_the_answer_allows_that_origin(served, shop):
    events = [page_view(referrer="https://google.com/"),
              {"type": "product_view", "url": f"{ORIGIN}/product/mug", "product_id": "12", "title": "Kubek"},
              {"type": "add_to_cart", "url": f"{ORIGIN}/product/mug", "product_id": 12, "variant_id": 4001, "quantity": 1, "price": 2999}]
    response = post(served, "events", shop["key"], {"visitor_id": VISITOR, "events": events})

    assert response.status_code == 202
    assert response.json() == {"status": "accepted", "stored": 3, "rejected": []}
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    stored = rows(served, shop["id"], StorefrontEvent)
    assert [(e.kind, e.product_platform_id, e.visitor_id) for e in stored] == [
        ("page_view", None, VISITOR), ("product_view", "12", VISITOR), ("add_to_cart", "12", VISITOR)]
    assert stored[2].data == {"variant_id": "4001", "quantity": 1, "price_minor": 2999}


def test_an_event_keeps_the_time_the_browser_reports_when_it_is_within_a_day_of_ours(served, shop):
    an_hour_ago_ms = int(time.time() * 1000) - 3_600_000
    events = [page_view(ts=an_hour_ago_ms), page_view(ts=an_hour_ago_ms - 3 * 86_400_000)]
    post(served, "events", shop["key"], {"visitor_id": VISITOR, "events": events})

    recent, wrong_clock = rows(served, shop["id"], StorefrontEvent)
    assert recent.occurred_at == dt.datetime.fromtimestamp(an_hour_ago_ms / 1000, dt.timezone.utc)
    assert dt.timedelta(minutes=59) < recent.received_at - recent.occurred_at < dt.timedelta(minutes=61)
    assert wrong_clock.occurred_at == wrong_clock.received_at


def test_a_batch_keeps_its_good_events_and_names_each_bad_one(served, shop):
    events = [page_view(), {"type": "purchase", "url": f"{ORIGIN}/"}, {"type": "product_view", "url": f"{ORIGIN}/p"}, page_view()]
    response = post(served, "events", shop["key"], {"visitor_id": VISITOR, "events": events})

    assert response.status_code == 202
    assert response.json()["stored"] == 2
    assert [(p["index"], p["field"]) for p in response.json()["rejected"]] == [(1, "events[1].type"), (2, "events[2].product_id")]
    assert len(rows(served, shop["id"], StorefrontEvent)) == 2


def test_a_batch_with_no_valid_event_is_refused_naming_the_problem(served, shop):
    response = post(served, "events", shop["key"], {"visitor_id": VISITOR, "events": [{"type": "page_view", "url": "javascript:alert(1)"}]})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_events"
    assert "events[0].url" in response.json()["message"]


def test_a_missing_or_malformed_visitor_id_is_refused_naming_the_field(served, shop):
    response = post(served, "events", shop["key"], {"visitor_id": "x", "events": [page_view()]})

    assert response.status_code == 400
    assert response.json() == {"error": "invalid_field",
                               "message": "visitor_id: must be the snippet's visitor id (16-64 letters, digits, - or _)"}


def test_a_body_that_is_not_json_is_refused(served, shop):
    response = post(served, "events", shop["key"], b"visitor_id=abc")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"


def test_when_storing_fails_the_batch_is_refused_whole_and_the_next_request_is_served(served, shop, shopify_shop):
    from app.models import Shop

    post(served, "events", shop["key"], {"visitor_id": VISITOR, "events": [page_view()]})  # the key is now cached
    with served.runtime.engine.begin() as conn:
        conn.execute(Shop.__table__.delete().where(Shop.__table__.c.id == shop["id"]))

    failed = post(served, "events", shop["key"], {"visitor_id": VISITOR, "events": [page_view(), page_view()]})
    started = time.monotonic()
    next_one = post(served, "events", shopify_shop["key"], {"visitor_id": VISITOR, "events": [page_view("https://kubki.pl/")]},
                    origin="https://kubki.pl")

    assert failed.status_code == 500
    assert next_one.status_code == 202 and time.monotonic() - started < 5  # no writer lock left behind
    assert count(served, StorefrontEvent) == 1


# --- the gate: origin, key, size, rate --------------------------------------------------------------------

def test_an_origin_outside_the_shops_domains_is_refused_and_nothing_is_stored(served, shop):
    response = post(served, "events", shop["key"], {"visitor_id": VISITOR, "events": [page_view()]}, origin="https://evil.example")

    assert response.status_code == 403
    assert response.json()["error"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in response.headers
    assert count(served, StorefrontEvent) == 0


def test_a_request_without_an_origin_is_refused(served, shop):
    response = post(served, "events", shop["key"], {"visitor_id": VISITOR, "events": [page_view()]}, origin=None)

    assert response.status_code == 403


def test_a_domain_listed_in_the_shops_storefront_domains_is_allowed(served, shop):
    response = post(served, "events", shop["key"], {"visitor_id": VISITOR, "events": [page_view("https://www.sklep.example.pl/")]},
                    origin="https://www.sklep.example.pl")

    assert response.status_code == 202
    assert response.headers["Access-Control-Allow-Origin"] == "https://www.sklep.example.pl"


def test_the_preflight_answers_only_the_shops_own_origins(served, shop):
    ours = requests.options(f"{served.url}/s/push-subscription", params={"k": shop["key"]}, timeout=10,
                            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "DELETE"})
    theirs = requests.options(f"{served.url}/s/push-subscription", params={"k": shop["key"]}, timeout=10,
                              headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "DELETE"})

    assert ours.status_code == 204
    assert ours.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "DELETE" in ours.headers["Access-Control-Allow-Methods"]
    assert theirs.status_code == 403
    assert "Access-Control-Allow-Origin" not in theirs.headers


def test_a_forged_public_key_is_refused_and_stores_nothing(served, shop):
    response = post(served, "events", shop["key"] + "x", {"visitor_id": VISITOR, "events": [page_view()]})

    assert response.status_code == 404
    assert response.json()["error"] == "unknown_key"
    assert count(served, StorefrontEvent) == 0


def test_the_public_key_of_one_shop_cannot_write_for_another_shops_origin(served, shop, shopify_shop):
    response = post(served, "events", shopify_shop["key"], {"visitor_id": VISITOR, "events": [page_view()]})

    assert response.status_code == 403
    assert count(served, StorefrontEvent) == 0


@pytest.mark.parametrize("limits", [{"STOREFRONT_MAX_BODY_BYTES": "2048"}])
def test_a_body_over_the_size_cap_is_refused_with_413(served, shop):
    big = {"visitor_id": VISITOR, "events": [page_view(title="x" * 400) for _ in range(10)]}
    response = post(served, "events", shop["key"], big)

    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert "2048" in response.json()["message"]
    assert count(served, StorefrontEvent) == 0


def test_the_events_preflight_answers_the_shops_own_origin_and_refuses_others(served, shop):
    ours = requests.options(f"{served.url}/s/events", params={"k": shop["key"]}, timeout=10,
                            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    theirs = requests.options(f"{served.url}/s/events", params={"k": shop["key"]}, timeout=10,
                              headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})

    assert ours.status_code == 204 and ours.content == b""
    assert ours.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "POST" in ours.headers["Access-Control-Allow-Methods"]
    assert theirs.status_code == 403 and theirs.json()["error"] == "origin_not_allowed"
    assert "Access-Control-Allow-Origin" not in theirs.headers


def test_a_refused_batch_still_tells_the_shops_own_page_why(served, shop):
    response = post(served, "events", shop["key"], {"visitor_id": VISITOR, "events": "page_view"})

    assert response.status_code == 400 and response.json()["error"] == "invalid_field"
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN  # readable by the snippet


def test_events_sent_without_a_declared_length_are_stored_and_capped_all_the_same(served, shop, make_settings):
    batch = json.dumps({"visitor_id": VISITOR, "events": [page_view(), page_view(f"{ORIGIN}/koszyk")]}).encode()
    chunked = requests.post(f"{served.url}/s/events", params={"k": shop["key"]}, data=iter([batch[:10], batch[10:]]),
                            headers={"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8"}, timeout=10)
    endless = requests.post(f"{served.url}/s/events", params={"k": shop["key"]}, data=iter([b" " * 65536] * 20),
                            headers={"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8"}, timeout=10)

    assert chunked.status_code == 202 and chunked.json()["stored"] == 2
    assert endless.status_code == 413 and endless.json()["error"] == "payload_too_large"
    assert count(served, StorefrontEvent) == 2


def test_reading_the_events_address_is_refused_with_405(served, shop):
    response = requests.get(f"{served.url}/s/events", params={"k": shop["key"]}, headers={"Origin": ORIGIN}, timeout=10)

    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}


@pytest.fixture
def fresh_window():
    """Start a rate-limit test well inside a counting window, so no request of it lands in the next one."""
    if time.time() % ratelimit.WINDOW_SECONDS > ratelimit.WINDOW_SECONDS - 5:
        time.sleep(ratelimit.WINDOW_SECONDS - time.time() % ratelimit.WINDOW_SECONDS + 0.1)


@pytest.mark.parametrize("limits", [{"STOREFRONT_VISITOR_REQUESTS_PER_MINUTE": "3"}])
def test_a_visitor_over_the_rate_limit_gets_429_with_retry_after(served, shop, fresh_window):
    statuses = [post(served, "events", shop["key"], {"visitor_id": VISITOR, "events": [page_view()]}).status_code for _ in range(3)]
    refused = post(served, "events", shop["key"], {"visitor_id": VISITOR, "events": [page_view()]})
    other_visitor = post(served, "events", shop["key"], {"visitor_id": "another-visitor-0001", "events": [page_view()]})

    assert statuses == [202, 202, 202]
    assert refused.status_code == 429
    assert refused.json()["error"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert other_visitor.status_code == 202
    assert len(rows(served, shop["id"], StorefrontEvent)) == 4


@pytest.mark.parametrize("limits", [{"STOREFRONT_IP_REQUESTS_PER_MINUTE": "2"}])
def test_the_ip_rate_limit_counts_every_visitor_from_that_address(served, shop, fresh_window):
    statuses = [post(served, "events", shop["key"], {"visitor_id": f"visitor-number-{i:04d}", "events": [page_view()]}).status_code
                for i in range(3)]

    assert statuses == [202, 202, 429]


@pytest.mark.parametrize("limits", [{"STOREFRONT_IP_REQUESTS_PER_MINUTE": "2"}])
def test_without_a_trusted_proxy_a_forged_x_forwarded_for_does_not_escape_the_ip_limit(served, shop, fresh_window):
    statuses = [post(served, "events", shop["key"], {"visitor_id": f"visitor-number-{i:04d}", "events": [page_view()]},
                     **{"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(3)]

    assert statuses == [202, 202, 429]


@pytest.mark.parametrize("limits", [{"STOREFRONT_IP_REQUESTS_PER_MINUTE": "2", "TRUSTED_PROXY_COUNT": "1"}])
def test_behind_a_trusted_proxy_each_shopper_address_has_its_own_ip_limit(served, shop, fresh_window):
    def from_address(forwarded_for: str, n: int) -> int:
        return post(served, "events", shop["key"], {"visitor_id": f"visitor-number-{n:04d}", "events": [page_view()]},
                    **{"X-Forwarded-For": forwarded_for}).status_code

    # The proxy appends the address it saw; whatever the client put before it is not believed.
    first_shopper = [from_address(f"10.9.9.{n}, 203.0.113.7", n) for n in range(3)]
    second_shopper = from_address("203.0.113.8", 3)

    assert first_shopper == [202, 202, 429]
    assert second_shopper == 202


@pytest.mark.parametrize("limits", [{"TRUSTED_PROXY_COUNT": "1"}])
def test_behind_a_trusted_proxy_a_signup_records_the_shoppers_address_as_proof(served, shop):
    response = signup(served, shop["key"], headers={"X-Forwarded-For": "198.51.100.23"})

    assert response.status_code == 202
    [consent] = rows(served, shop["id"], Consent)
    assert consent.ip_address == "198.51.100.23"


@pytest.mark.parametrize("limits", [{"STOREFRONT_VISITOR_REQUESTS_PER_MINUTE": "1000"}])
def test_far_below_its_limits_a_web_process_adds_its_counts_to_the_shared_table_once_a_second(served, shop, fresh_window):
    body = {"visitor_id": VISITOR, "events": [page_view()]}
    statuses = [post(served, "events", shop["key"], body).status_code for _ in range(5)]
    shared_before = shared_count(served, f"v:{shop['id']}:{VISITOR}")
    time.sleep(ratelimit.SYNC_SECONDS)
    post(served, "events", shop["key"], body)

    assert statuses == [202] * 5
    assert shared_before == 0
    assert shared_count(served, f"v:{shop['id']}:{VISITOR}") == 6
    assert len(rows(served, shop["id"], StorefrontEvent)) == 6


def shared_count(served, key: str) -> int:
    with served.runtime.engine.connect() as conn:
        return conn.execute(select(func.coalesce(func.sum(RateLimitCounter.count), 0))
                            .where(RateLimitCounter.key == key)).scalar_one()


@pytest.mark.parametrize("limits", [{"STOREFRONT_VISITOR_REQUESTS_PER_MINUTE": "3"}])
def test_the_visitor_limit_is_shared_by_every_web_process(served, shop, make_settings, limits, fresh_window):
    from app import create_app

    other_app = create_app(make_settings(**limits))
    other = ServedApp(other_app)
    try:
        body = {"visitor_id": VISITOR, "events": [page_view()]}
        statuses = [post(server, "events", shop["key"], body).status_code for server in (served, other, served, other)]
    finally:
        other.close()
        other_app.extensions["companion"].close()

    assert statuses == [202, 202, 202, 429]


def test_with_redis_the_counters_live_in_redis_and_still_limit(make_settings, fresh_window):
    from app import create_app

    require("Redis", REDIS_URL)
    app = create_app(make_settings(REDIS_URL=REDIS_URL, STOREFRONT_VISITOR_REQUESTS_PER_MINUTE="2",
                                   STOREFRONT_IP_REQUESTS_PER_MINUTE="1000000"))
    server = ServedApp(app)
    try:
        with app.extensions["companion"].sessions.begin() as session:
            key = make_shop(session, DOMAIN, platform="woocommerce").public_key
        visitor = f"redis-visitor-{secrets.token_hex(8)}"
        statuses = [post(server, "events", key, {"visitor_id": visitor, "events": [page_view()]}).status_code for _ in range(3)]
        with app.extensions["companion"].engine.connect() as conn:
            counters_in_database = conn.execute(select(func.count()).select_from(RateLimitCounter)).scalar_one()
    finally:
        server.close()
        app.extensions["companion"].close()

    assert statuses == [202, 202, 429]
    assert counters_in_database == 0


def test_when_redis_is_unreachable_events_are_still_accepted(make_settings):
    from app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    app = create_app(make_settings(REDIS_URL=f"redis://127.0.0.1:{dead}/0"))
    server = ServedApp(app)
    try:
        with app.extensions["companion"].sessions.begin() as session:
            key = make_shop(session, DOMAIN, platform="woocommerce").public_key
        response = post(server, "events", key, {"visitor_id": VISITOR, "events": [page_view()]})
    finally:
        server.close()
        app.extensions["companion"].close()

    assert response.status_code == 202


# --- carts and contacts -------------------------------------------------------------------------------------

def link_params(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def test_a_woocommerce_cart_is_stored_with_its_lines_and_a_link_restoring_it(served, shop):
    before = int(time.time())
    response = post(served, "cart", shop["key"], {"visitor_id": VISITOR, "cart": WOO_CART})

    assert response.status_code == 202
    [cart] = rows(served, shop["id"], Cart)
    assert (cart.platform_token, cart.source, cart.visitor_id, cart.currency, cart.total, cart.status) == (
        f"sc-{VISITOR}", "snippet", VISITOR, "PLN", Decimal("59.98"), "active")
    issued = int(link_params(cart.recovery_url)[cart_links.ISSUED_PARAM])
    assert before <= issued <= time.time()  # dated when the cart was captured
    signature = cart_links.sign(served.runtime.settings.secret_key, shop["key"], issued, 1, "12:2")
    assert cart.recovery_url == (f"{ORIGIN}/?store_companion_cart=12:2&store_companion_issued={issued}"
                                 f"&store_companion_lines=1&store_companion_sig={signature}")
    [line] = rows(served, shop["id"], CartLine)
    assert (line.product_platform_id, line.name, line.quantity, line.unit_price, line.sku) == ("12", "Kubek", 2, Decimal("29.99"), "MUG-1")


def test_a_shopify_cart_is_stored_under_its_cart_token_with_a_cart_permalink(served, shopify_shop):
    cart_js = {"token": "Z2NwLWV1cm9wZS13ZXN0NDowMUhN?key=6dacd6065bb8", "currency": "PLN", "total_price": 5998, "items": [
        {"id": 4001, "variant_id": 4001, "product_id": 12, "product_title": "Kubek", "quantity": 2, "price": 2999,
         "final_price": 2999, "sku": "MUG-1", "url": "/products/mug?variant=4001", "image": "//cdn.shopify.com/mug.jpg"}]}
    response = post(served, "cart", shopify_shop["key"], {"visitor_id": VISITOR, "cart": cart_js}, origin="https://kubki.pl")

    assert response.status_code == 202
    [cart] = rows(served, shopify_shop["id"], Cart)
    assert cart.platform_token == "Z2NwLWV1cm9wZS13ZXN0NDowMUhN"
    assert cart.recovery_url == "https://kubki.pl/cart/4001:2"
    [line] = rows(served, shopify_shop["id"], CartLine)
    assert (line.variant_platform_id, line.product_url, line.image_url) == (
        "4001", "https://kubki.pl/products/mug?variant=4001", "https://cdn.shopify.com/mug.jpg")


SHOPIFY_CART = {"token": "Z2NwLWV1cm9wZS13ZXN0NDowMUhN", "currency": "PLN", "total_price": 2999,
                "items": [{"id": 4001, "variant_id": 4001, "product_id": 12, "title": "Kubek", "quantity": 1, "price": 2999}]}


@pytest.mark.parametrize("platform", ["woocommerce", "shopify"])
def test_the_answer_to_a_posted_cart_holds_no_recovery_link_so_nobody_can_have_a_cart_of_their_choosing_signed(
        served, shop, shopify_shop, platform):
    # The key is in every page of the shop and Origin is only a browser's promise: anyone can post any cart here.
    key, origin, cart = ((shop["key"], ORIGIN, WOO_CART) if platform == "woocommerce"
                         else (shopify_shop["key"], "https://kubki.pl", SHOPIFY_CART))

    response = post(served, "cart", key, {"visitor_id": VISITOR, "cart": cart}, origin=origin)

    assert response.status_code == 202
    assert response.json() == {"status": "accepted"}
    [stored] = rows(served, shop["id"] if platform == "woocommerce" else shopify_shop["id"], Cart)
    assert stored.recovery_url  # kept for the shopper's own reminders


def test_a_cart_link_is_signed_for_the_shop_key_as_stored_not_as_the_request_spelled_it(served, shop, monkeypatch):
    # A database comparing keys without regard to case (MySQL's default collation) finds the shop for a key spelled
    # otherwise; the plugin checks links against the key saved in its settings, the stored one.
    spelled = shop["key"].swapcase()
    assert spelled != shop["key"]
    lookup = guard._ShopCache.get
    monkeypatch.setattr(guard._ShopCache, "get", lambda cache, sessions, key: lookup(
        cache, sessions, shop["key"] if key.casefold() == shop["key"].casefold() else key))

    response = post(served, "cart", spelled, {"visitor_id": VISITOR, "cart": WOO_CART})

    assert response.status_code == 202, response.text
    [cart] = rows(served, shop["id"], Cart)
    link, public = link_params(cart.recovery_url), cart_links.public_key(served.runtime.settings.secret_key)
    signed = (int(link[cart_links.ISSUED_PARAM]), int(link[cart_links.LINES_PARAM]), link[cart_links.PARAM],
              link[cart_links.SIGNATURE_PARAM])
    assert cart_links.verify(public, shop["key"], *signed)
    assert not cart_links.verify(public, spelled, *signed)


def test_a_later_cart_replaces_the_lines_of_the_earlier_one(served, shop):
    post(served, "cart", shop["key"], {"visitor_id": VISITOR, "cart": WOO_CART})
    smaller = {**WOO_CART, "items": [{**WOO_CART["items"][0], "quantity": 1}],
               "totals": {**WOO_CART["totals"], "total_price": "2999"}}
    post(served, "cart", shop["key"], {"visitor_id": VISITOR, "cart": smaller})

    [cart] = rows(served, shop["id"], Cart)
    assert cart.total == Decimal("29.99")
    assert [line.quantity for line in rows(served, shop["id"], CartLine)] == [1]
    assert link_params(cart.recovery_url)[cart_links.PARAM] == "12:1"  # a fresh link, dated by the later cart


def test_reaching_the_order_received_page_marks_the_visitors_cart_bought(served, shop):
    post(served, "cart", shop["key"], {"visitor_id": VISITOR, "cart": WOO_CART})
    response = post(served, "cart", shop["key"], {"visitor_id": VISITOR, "order_id": "1234"})

    assert response.status_code == 202
    [cart] = rows(served, shop["id"], Cart)
    assert cart.status == "converted"
    assert len(rows(served, shop["id"], CartLine)) == 1  # what was bought stays on record


def test_after_a_purchase_the_next_cart_of_the_same_browser_is_a_new_cart(served, shop):
    post(served, "cart", shop["key"], {"visitor_id": VISITOR, "cart": WOO_CART})
    post(served, "cart", shop["key"], {"visitor_id": VISITOR, "order_id": "1234"})
    post(served, "cart", shop["key"], {"visitor_id": VISITOR, "cart": WOO_CART})
    post(served, "cart", shop["key"], {"visitor_id": VISITOR, "cart": WOO_CART})

    carts = rows(served, shop["id"], Cart)
    assert [(c.platform_token, c.status) for c in carts] == [(f"sc-{VISITOR}", "converted"), (f"sc-{VISITOR}-2", "active")]


def test_a_cart_with_a_bad_quantity_is_refused_naming_the_line(served, shop):
    bad = {**WOO_CART, "items": [{**WOO_CART["items"][0], "quantity": 0}]}
    response = post(served, "cart", shop["key"], {"visitor_id": VISITOR, "cart": bad})

    assert response.status_code == 400
    assert response.json()["message"].startswith("cart.items[0].quantity:")
    assert count(served, Cart) == 0


def test_the_email_typed_at_checkout_links_the_visitor_and_their_cart_to_the_customer(served, shop):
    post(served, "cart", shop["key"], {"visitor_id": VISITOR, "cart": WOO_CART})
    response = post(served, "contact", shop["key"], {"visitor_id": VISITOR, "email": " Ana@Example.COM "})

    assert response.status_code == 202
    [customer] = rows(served, shop["id"], Customer)
    [cart] = rows(served, shop["id"], Cart)
    [seen] = rows(served, shop["id"], StorefrontVisitor)
    assert customer.email == "ana@example.com"
    assert (cart.customer_id, cart.email) == (customer.id, "ana@example.com")
    assert seen.customer_id == customer.id


def test_a_national_phone_number_is_stored_in_e164_for_the_shops_country(served, shop):
    post(served, "contact", shop["key"], {"visitor_id": VISITOR, "phone": "600 100 200"})

    [customer] = rows(served, shop["id"], Customer)
    assert customer.phone == "+48600100200"


def test_contact_answers_the_same_for_a_known_and_an_unknown_email(served, shop):
    with served.runtime.sessions.begin() as session, shop_context(shop["id"]):
        from app.models import Shop

        make_customer(session, session.get(Shop, shop["id"]), "known@example.com")
    known = post(served, "contact", shop["key"], {"visitor_id": VISITOR, "email": "known@example.com"})
    unknown = post(served, "contact", shop["key"], {"visitor_id": "another-visitor-0001", "email": "new@example.com"})

    assert (known.status_code, known.content) == (unknown.status_code, unknown.content)


# --- sign-up with double opt-in -------------------------------------------------------------------------------

def signup(served, key, email="ana@example.com", headers: dict | None = None, **overrides):
    body = {"visitor_id": VISITOR, "form_id": "newsletter", "email": email, "consent": True,
            "consent_text_version": "nl-2026-11", "locale": "pl", **overrides}
    return post(served, "signup", key, body, **{"User-Agent": "Mozilla/5.0 Test", **(headers or {})})


def test_signup_records_a_pending_consent_and_queues_the_confirmation_email(served, shop):
    response = signup(served, shop["key"])

    assert response.status_code == 202
    [customer] = rows(served, shop["id"], Customer)
    [consent] = rows(served, shop["id"], Consent)
    [pending] = rows(served, shop["id"], DoubleOptIn)
    assert (consent.customer_id, consent.channel, consent.state, consent.form_text_version) == (customer.id, "email", "pending", "nl-2026-11")
    assert (consent.ip_address, consent.user_agent) == ("127.0.0.1", "Mozilla/5.0 Test")
    assert (pending.status, pending.form_id, pending.locale, pending.consent_id) == ("queued", "newsletter", "pl", consent.id)
    with served.runtime.sessions() as session:
        job = session.scalars(select(Job).where(Job.kind == optin.SEND_JOB_KIND)).one()
    assert (job.shop_id, job.args) == (shop["id"], {"double_opt_in_id": pending.id})


def test_without_a_registered_sender_the_confirmation_waits_as_unsent(served, shop):
    sender = registry._kinds.pop(optin.SEND_JOB_KIND, None)
    try:
        response = signup(served, shop["key"])
    finally:
        if sender is not None:
            registry._kinds[optin.SEND_JOB_KIND] = sender

    assert response.status_code == 202
    assert [p.status for p in rows(served, shop["id"], DoubleOptIn)] == ["unsent"]
    assert count(served, Job) == 0


def test_the_confirmation_link_grants_consent_with_time_ip_user_agent_and_wording(served, shop):
    signup(served, shop["key"])
    [pending] = rows(served, shop["id"], DoubleOptIn)
    link = confirmation_url(served.runtime.settings, pending).replace(served.runtime.settings.public_url, served.url)

    page = requests.get(link, headers={"User-Agent": "Mail client browser"}, timeout=10)
    again = requests.get(link, timeout=10)

    assert page.status_code == 200 and "potwierdzona" in page.text
    assert again.status_code == 200
    consents = rows(served, shop["id"], Consent)
    assert [c.state for c in consents] == ["pending", "granted"]
    granted = consents[-1]
    assert (granted.source, granted.form_text_version, granted.ip_address, granted.user_agent) == (
        "storefront:double_opt_in", "nl-2026-11", "127.0.0.1", "Mail client browser")
    assert rows(served, shop["id"], DoubleOptIn)[0].confirmed_at is not None


def test_confirming_tells_the_automations_the_consent_changed(served, shop):
    from app.models.automations import Signal

    signup(served, shop["key"])
    [pending] = rows(served, shop["id"], DoubleOptIn)
    requests.get(confirmation_url(served.runtime.settings, pending).replace(served.runtime.settings.public_url, served.url), timeout=10)

    signals = [(s.kind, s.payload.get("state")) for s in rows(served, shop["id"], Signal) if s.kind == "consent_changed"]
    assert signals == [("consent_changed", "pending"), ("consent_changed", "granted")]


def test_a_tampered_confirmation_link_is_refused_and_grants_nothing(served, shop):
    signup(served, shop["key"])
    [pending] = rows(served, shop["id"], DoubleOptIn)
    token = confirmation_url(served.runtime.settings, pending).rsplit("/", 1)[1]
    forged = token[:-3] + ("aaa" if not token.endswith("aaa") else "bbb")

    response = requests.get(f"{served.url}/s/confirm/{forged}", timeout=10)

    assert response.status_code == 400
    assert [c.state for c in rows(served, shop["id"], Consent)] == ["pending"]


def test_signup_without_the_consent_box_ticked_is_refused(served, shop):
    response = signup(served, shop["key"], consent=False)

    assert response.status_code == 400
    assert response.json()["message"].startswith("consent:")
    assert count(served, Consent) == 0


def test_signup_with_an_outdated_consent_wording_is_refused_with_409(served, shop):
    response = signup(served, shop["key"], consent_text_version="nl-2025-01")

    assert response.status_code == 409
    assert response.json()["error"] == "consent_text_changed"


def test_signup_answers_the_same_for_a_new_and_an_already_subscribed_address(served, shop):
    signup(served, shop["key"], email="old@example.com")
    [pending] = rows(served, shop["id"], DoubleOptIn)
    requests.get(confirmation_url(served.runtime.settings, pending).replace(served.runtime.settings.public_url, served.url), timeout=10)

    subscribed = signup(served, shop["key"], email="old@example.com")
    new = signup(served, shop["key"], email="new@example.com")

    assert (subscribed.status_code, subscribed.content) == (new.status_code, new.content)
    old_consents = [c.state for c in rows(served, shop["id"], Consent) if c.customer_id == pending.customer_id]
    assert old_consents == ["pending", "granted"]


# --- web push ---------------------------------------------------------------------------------------------------

SUBSCRIPTION = {"endpoint": "https://fcm.googleapis.com/fcm/send/abc:123",
                "keys": {"p256dh": "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM",
                         "auth": "tBHItJI5svbpez7KI4CCXg"}}


def test_a_push_subscription_is_stored_with_the_consent_it_was_given_under(served, shop):
    response = post(served, "push-subscription", shop["key"],
                    {"visitor_id": VISITOR, "subscription": SUBSCRIPTION, "consent_text_version": "push-1"})

    assert response.status_code == 202
    [subscription] = rows(served, shop["id"], PushSubscription)
    [opt_in] = rows(served, shop["id"], PushOptIn)
    assert (subscription.endpoint, subscription.status, subscription.visitor_id) == (SUBSCRIPTION["endpoint"], "active", VISITOR)
    assert (opt_in.push_subscription_id, opt_in.form_text_version, opt_in.ip_address, opt_in.revoked_at) == (
        subscription.id, "push-1", "127.0.0.1", None)


def test_deleting_a_push_subscription_marks_it_unsubscribed_and_revokes_its_consent(served, shop):
    post(served, "push-subscription", shop["key"], {"visitor_id": VISITOR, "subscription": SUBSCRIPTION, "consent_text_version": "push-1"})
    response = post(served, "push-subscription", shop["key"], {"visitor_id": VISITOR, "endpoint": SUBSCRIPTION["endpoint"]}, method="DELETE")

    assert response.status_code == 202
    assert rows(served, shop["id"], PushSubscription)[0].status == "unsubscribed"
    assert rows(served, shop["id"], PushOptIn)[0].revoked_at is not None


def test_a_push_subscription_to_a_plain_http_endpoint_is_refused(served, shop):
    response = post(served, "push-subscription", shop["key"], {"visitor_id": VISITOR, "consent_text_version": "push-1",
                                                               "subscription": {**SUBSCRIPTION, "endpoint": "http://push.example/x"}})

    assert response.status_code == 400
    assert response.json()["message"].startswith("subscription.endpoint:")


# --- assets and the Shopify app proxy --------------------------------------------------------------------------

def test_the_snippet_is_cached_briefly_unversioned_and_for_a_year_by_its_version(served):
    plain = requests.get(f"{served.url}/s/snippet.js", timeout=10)
    version = plain.headers["ETag"].strip('"')
    pinned = requests.get(f"{served.url}/s/snippet.js", params={"v": version}, timeout=10)
    revalidated = requests.get(f"{served.url}/s/snippet.js", headers={"If-None-Match": plain.headers["ETag"]}, timeout=10)

    assert plain.status_code == 200 and plain.headers["Content-Type"].startswith("application/javascript")
    assert plain.headers["Cache-Control"] == "public, max-age=300"
    assert pinned.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert revalidated.status_code == 304
    assert b"StoreCompanion" in plain.content


def test_the_app_proxy_signature_matches_shopifys_documented_example():
    pairs = [("extra", "1"), ("extra", "2"), ("shop", "shop-name.myshopify.com"), ("logged_in_customer_id", "1"),
             ("path_prefix", "/apps/awesome_reviews"), ("timestamp", "1317327555"),
             ("signature", "4c68c8624d737112c91818c11017d24d334b524cb5c2b8ba08daa056f7395ddb")]

    assert verify_proxy_query(pairs, ["hush"])
    assert not verify_proxy_query(pairs, ["not-the-secret"])


def test_the_app_proxy_serves_the_service_worker_with_the_shops_key_only_when_signed(served, shopify_shop):
    params = [("shop", "kubki.myshopify.com"), ("logged_in_customer_id", ""), ("path_prefix", "/apps/store-companion"),
              ("timestamp", "1764400000")]
    signed = params + [("signature", sign_proxy_query(params, SHOPIFY_SECRET))]
    good = requests.get(f"{served.url}/s/proxy/sw.js", params=signed, timeout=10)
    forged = requests.get(f"{served.url}/s/proxy/sw.js", params=params + [("signature", "0" * 64)], timeout=10)

    assert good.status_code == 200
    assert good.headers["Content-Type"].startswith("application/javascript")
    assert f'"key": "{shopify_shop["key"]}"' in good.text
    assert "showNotification" in good.text
    assert forged.status_code == 401


def test_push_is_offered_with_the_installations_vapid_key_when_the_shop_enables_it(served, shop):
    from app.notifiers.push import application_server_key, load_or_create_vapid_key

    with served.runtime.sessions.begin() as session:
        from app.models import Shop

        held = session.get(Shop, shop["id"])
        held.settings = {**held.settings, "storefront": {**held.settings["storefront"], "push": {"enabled": True, "consent_version": "push-1"}}}
    settings = served.runtime.settings
    expected = application_server_key(load_or_create_vapid_key(settings.instance_dir, settings.messaging.vapid_private_key))

    config = requests.get(f"{served.url}/s/config", params={"k": shop["key"], "l": "ro"}, headers={"Origin": ORIGIN}, timeout=10).json()

    assert config["push"]["vapid_public_key"] == expected
    assert config["push"]["consent_version"] == "push-1"
    assert config["push"]["texts"]["allow"] == "Da, anunță-mă"
    assert config["forms"][0]["texts"]["title"] == "Abonează-te la newsletter"
