"""The WooCommerce glue end to end against the loopback fake store: connect, webhooks, sync, health, write-back."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select, text

from app.jobs.executors.local import LocalWorker
from app.jobs.queue import enqueue
from app.models import Cart, Coupon, Customer, InboundEvent, Job, Order, Product, Shipment, Shop, ShopAlert, SyncRun, utcnow
from app.tenancy import shop_context
from tests.fake_woocommerce import CONSUMER_KEY, CONSUMER_SECRET, FakeWooCommerce

PUBLIC_URL = "https://companion.example.com"
NOV_20 = dt.datetime(2026, 11, 20, 9, 0)


@pytest.fixture
def store():
    with FakeWooCommerce() as fake:
        yield fake


@pytest.fixture
def woo_app(make_settings):
    from app import create_app

    app = create_app(make_settings(PUBLIC_URL=PUBLIC_URL, ALLOW_PRIVATE_STORE_URLS="true"))
    yield app
    app.extensions["companion"].close()


@pytest.fixture
def runtime(woo_app):
    return woo_app.extensions["companion"]


def work(runtime) -> None:
    LocalWorker(runtime).run(exit_when_idle=True)


def connect(woo_app, store, **overrides):
    body = {"store_url": store.url, "consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET, **overrides}
    return woo_app.test_client().post("/connect/woocommerce", json=body)


@pytest.fixture
def shop_id(woo_app, runtime, store):
    """A store connected with pasted keys, its webhooks created and its initial sync done."""
    answer = connect(woo_app, store)
    assert answer.status_code == 201, answer.json
    work(runtime)
    return answer.json["shop_id"]


def count(runtime, shop_id: int, model) -> int:
    with runtime.sessions() as session, shop_context(shop_id):
        return session.scalar(select(func.count()).select_from(model))


def hook_for(store, topic: str) -> int:
    return next(hook_id for hook_id, hook in store.webhooks.items() if hook["topic"] == topic)


def deliver(woo_app, runtime, store, shop_id: int, topic: str, payload: dict, *, body: bytes | None = None,
            headers: dict | None = None):
    raw, signed_headers = store.delivery(hook_for(store, topic), payload)
    with runtime.sessions() as session:
        token = session.get(Shop, shop_id).webhook_token
    return woo_app.test_client().post(f"/webhooks/woocommerce/{token}", data=raw if body is None else body,
                                      headers={**signed_headers, **(headers or {})})


def order_row(runtime, shop_id: int, platform_id) -> Order | None:
    with runtime.sessions() as session, shop_context(shop_id):
        return session.scalars(select(Order).where(Order.platform_id == str(platform_id))).first()


# --- connecting ---------------------------------------------------------------------------------------

def test_pasted_keys_are_checked_stored_encrypted_and_the_store_is_imported(woo_app, runtime, store):
    store.add_customer(7)
    store.add_product(93)
    store.add_order(501, customer_id=7)
    store.add_order(502)

    answer = connect(woo_app, store)
    assert answer.status_code == 201 and answer.json["capabilities"]["shipment_tracking"] is True
    work(runtime)

    shop_id = answer.json["shop_id"]
    with runtime.sessions() as session:
        stored = session.execute(text("SELECT credentials FROM shops WHERE id = :id"), {"id": shop_id}).scalar()
        shop = session.get(Shop, shop_id)
    assert CONSUMER_SECRET not in str(stored) and shop.credentials.reveal()["consumer_secret"] == CONSUMER_SECRET
    assert shop.timezone == "Europe/Warsaw"
    assert (count(runtime, shop_id, Customer), count(runtime, shop_id, Product), count(runtime, shop_id, Order)) == (1, 1, 2)
    with runtime.sessions() as session, shop_context(shop_id):
        runs = session.scalars(select(SyncRun).where(SyncRun.kind == "initial")).all()
    assert {run.resource: run.status for run in runs} == {"customers": "done", "products": "done", "orders": "done",
                                                          "refunds": "done"}


def test_connecting_creates_our_webhooks_with_a_secret_we_keep(woo_app, runtime, store, shop_id):
    with runtime.sessions() as session:
        shop = session.get(Shop, shop_id)
        address = f"{PUBLIC_URL}/webhooks/woocommerce/{shop.webhook_token}"
        secret = shop.credentials.reveal()["webhook_secret"]
    ours = {hook["topic"] for hook in store.webhooks.values() if hook["delivery_url"] == address}
    assert {"order.created", "order.updated", "customer.updated", "product.updated"} <= ours
    assert set(store.webhook_secrets.values()) == {secret}


def test_keys_the_store_refuses_are_reported_and_nothing_is_created(woo_app, runtime, store):
    answer = connect(woo_app, store, consumer_secret="cs_" + "0" * 40)
    assert answer.status_code == 400 and answer.json["error"] == "keys_refused"
    with runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Shop)) == 0


@pytest.mark.parametrize("field, value, error", [
    ("store_url", "ftp://sklep.example.pl", "invalid_store_url"),
    ("consumer_key", "not-a-key", "invalid_keys"),
    ("consumer_secret", "", "missing_fields"),
])
def test_bad_connection_input_gets_a_clear_error(woo_app, store, field, value, error):
    answer = connect(woo_app, store, **{field: value})
    assert answer.status_code == 400 and answer.json["error"] == error


def test_a_store_on_a_private_address_is_refused_in_production(make_settings, store):
    from app import create_app

    app = create_app(make_settings(PUBLIC_URL=PUBLIC_URL))
    try:
        answer = app.test_client().post("/connect/woocommerce", json={
            "store_url": store.url, "consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET})
    finally:
        app.extensions["companion"].close()
    assert answer.status_code == 400 and answer.json["error"] == "invalid_store_url"
    assert "not a public address" in answer.json["message"] and store.requests == []


def _start_one_click(woo_app, store) -> str:
    answer = woo_app.test_client().get("/connect/woocommerce/authorize", query_string={"store_url": store.url})
    assert answer.status_code == 302
    location = urlsplit(answer.headers["Location"])
    asked = parse_qs(location.query)
    assert location.path == "/wc-auth/v1/authorize" and asked["scope"] == ["read_write"]
    assert asked["callback_url"] == [f"{PUBLIC_URL}/connect/woocommerce/callback"]
    return asked["user_id"][0]


def _granted(user_id: str) -> dict:
    return {"key_id": 1, "user_id": user_id, "consumer_key": CONSUMER_KEY, "consumer_secret": CONSUMER_SECRET,
            "key_permissions": "read_write"}


def test_the_one_click_flow_binds_the_posted_keys_to_the_store_it_started_from(woo_app, runtime, store):
    user_id = _start_one_click(woo_app, store)
    client = woo_app.test_client()
    callback = client.post("/connect/woocommerce/callback", data=json.dumps(_granted(user_id)),
                           content_type="application/json;charset=UTF-8")
    assert callback.status_code == 200  # exactly 200, or WooCommerce deletes the key again
    work(runtime)
    back = client.get("/connect/woocommerce/return", query_string={"success": "1", "user_id": user_id})
    assert back.status_code == 200 and back.json["status"] == "connected"
    with runtime.sessions() as session:
        shop = session.scalars(select(Shop)).one()
    assert shop.domain == store.url and shop.status == "active" and store.webhooks


def test_a_key_grant_replayed_or_for_an_id_we_never_issued_is_refused(woo_app, store):
    user_id = _start_one_click(woo_app, store)
    client = woo_app.test_client()
    assert client.post("/connect/woocommerce/callback", json=_granted(user_id)).status_code == 200
    assert client.post("/connect/woocommerce/callback", json=_granted(user_id)).status_code == 403
    assert client.post("/connect/woocommerce/callback", json=_granted("guessed-id")).status_code == 403


# --- webhooks -----------------------------------------------------------------------------------------

def test_the_creation_ping_is_answered_200_and_stores_nothing(woo_app, runtime, store, shop_id):
    raw, headers = store.ping(hook_for(store, "order.created"))
    with runtime.sessions() as session:
        token = session.get(Shop, shop_id).webhook_token
    answer = woo_app.test_client().post(f"/webhooks/woocommerce/{token}", data=raw, headers=headers)
    assert answer.status_code == 200 and count(runtime, shop_id, InboundEvent) == 0


def test_a_signed_delivery_is_stored_and_ingested(woo_app, runtime, store, shop_id):
    order = store.add_order(601, modified=NOV_20 + dt.timedelta(hours=1), total="349.00")
    assert deliver(woo_app, runtime, store, shop_id, "order.created", order).json["status"] == "accepted"
    work(runtime)
    assert order_row(runtime, shop_id, 601).total == Decimal("349.00")


def test_a_reserialised_body_does_not_verify(woo_app, runtime, store, shop_id):
    order = store.add_order(602, lines=[{"name": "Róże 1/2 tuzina", "subtotal": "99.00"}])
    reserialised = json.dumps(order).encode()  # Python writes "/" where WooCommerce wrote "\/"
    answer = deliver(woo_app, runtime, store, shop_id, "order.created", order, body=reserialised)
    assert answer.status_code == 401 and count(runtime, shop_id, InboundEvent) == 0


def test_a_tampered_body_or_a_forged_signature_is_rejected(woo_app, runtime, store, shop_id):
    order = store.add_order(603)
    raw, _ = store.delivery(hook_for(store, "order.created"), order)
    tampered = raw.replace(b'"total":"249.90"', b'"total":"0.01"')
    assert deliver(woo_app, runtime, store, shop_id, "order.created", order, body=tampered).status_code == 401
    forged = deliver(woo_app, runtime, store, shop_id, "order.created", order,
                     headers={"X-WC-Webhook-Signature": "bm90IGEgc2lnbmF0dXJl"})
    assert forged.status_code == 401 and forged.json["error"] == "invalid_signature"


def test_a_delivery_to_an_unknown_store_address_is_404(woo_app, store, shop_id):
    answer = woo_app.test_client().post("/webhooks/woocommerce/not-a-token", data=b"{}",
                                        headers={"X-WC-Webhook-Signature": "x"})
    assert answer.status_code == 404 and answer.json["error"] == "unknown_shop"


def test_identical_deliveries_are_stored_once(woo_app, runtime, store, shop_id):
    order = store.add_order(604)
    first = deliver(woo_app, runtime, store, shop_id, "order.updated", order)
    again = deliver(woo_app, runtime, store, shop_id, "order.updated", order)
    assert (first.json["status"], again.json["status"]) == ("accepted", "duplicate")


def test_an_older_state_arriving_late_does_not_overwrite_a_newer_one(woo_app, runtime, store, shop_id):
    older = dict(store.add_order(605, status="processing", modified=NOV_20 + dt.timedelta(hours=1)))
    newer = dict(store.touch_order(605, NOV_20 + dt.timedelta(hours=2), status="completed"))
    deliver(woo_app, runtime, store, shop_id, "order.updated", newer)
    work(runtime)
    deliver(woo_app, runtime, store, shop_id, "order.updated", {**older, "status": "processing"})
    work(runtime)
    assert order_row(runtime, shop_id, 605).status == "completed"


def test_a_checkout_draft_delivery_becomes_a_cart_not_an_order(woo_app, runtime, store, shop_id):
    draft = store.add_order(606, status="checkout-draft", paid=False, created_via="store-api",
                            modified=NOV_20 + dt.timedelta(hours=1))
    deliver(woo_app, runtime, store, shop_id, "order.updated", draft)
    work(runtime)
    assert order_row(runtime, shop_id, 606) is None
    with runtime.sessions() as session, shop_context(shop_id):
        cart = session.scalars(select(Cart)).one()
    assert cart.email == "zofia.nowak@example.pl" and cart.recovery_url.startswith(store.url)


# --- sync and webhook health --------------------------------------------------------------------------

def test_checkout_drafts_found_by_polling_become_carts_completed_by_their_order(woo_app, runtime, store, shop_id):
    store.add_order(701, status="checkout-draft", paid=False, created_via="store-api", modified=NOV_20 + dt.timedelta(hours=3))
    with runtime.sessions.begin() as session:
        enqueue(session, "woocommerce.poll_checkout_drafts", shop_id=shop_id)
    work(runtime)
    with runtime.sessions() as session, shop_context(shop_id):
        assert session.scalars(select(Cart)).one().status == "active"

    placed = store.touch_order(701, NOV_20 + dt.timedelta(hours=4), status="processing")
    deliver(woo_app, runtime, store, shop_id, "order.updated", placed)
    work(runtime)
    with runtime.sessions() as session, shop_context(shop_id):
        assert session.scalars(select(Cart)).one().status == "converted"


def test_a_webhook_woocommerce_disabled_is_re_enabled_the_gap_backfilled_and_the_owner_told(woo_app, runtime, store, shop_id):
    hook = hook_for(store, "order.created")
    store.fail_deliveries(hook, 7)
    assert store.webhooks[hook]["status"] == "disabled"
    store.add_order(801, modified=dt.datetime(2026, 11, 28, 12, 0))  # its delivery was never made

    with runtime.sessions.begin() as session:
        enqueue(session, "woocommerce.check_webhooks", shop_id=shop_id)
    work(runtime)

    assert store.webhooks[hook]["status"] == "active"
    assert order_row(runtime, shop_id, 801) is not None
    with runtime.sessions() as session, shop_context(shop_id):
        alert = session.scalars(select(ShopAlert)).one()
    assert alert.kind == "woocommerce_webhooks_disabled" and "order.created" in alert.message


def test_reconciliation_fetches_only_what_changed_since_its_cursor(woo_app, runtime, store):
    store.add_order(900, modified=NOV_20)
    shop_id = connect(woo_app, store).json["shop_id"]
    work(runtime)
    store.add_order(901, modified=dt.datetime(2026, 11, 28, 12, 0))
    with runtime.sessions.begin() as session:
        enqueue(session, "woocommerce.sync", shop_id=shop_id, purpose="reconcile", resources=["orders"])
    work(runtime)
    asked = store.requests_to("/wc/v3/orders", "GET")[-1].query
    assert asked["dates_are_gmt"] == "true" and asked["orderby"] == "modified"
    assert asked["modified_after"].startswith("2026-11-20T08:50"), "the last cursor minus a ten-minute overlap"
    assert order_row(runtime, shop_id, 901) is not None


def test_refunds_listed_on_an_order_are_fetched_and_mark_it_refunded(woo_app, runtime, store, shop_id):
    store.add_order(902, total="249.90", modified=NOV_20 + dt.timedelta(hours=1))
    store.add_refund(902, "249.90", created=NOV_20 + dt.timedelta(hours=5))
    deliver(woo_app, runtime, store, shop_id, "order.updated", store.orders[902])
    work(runtime)
    assert order_row(runtime, shop_id, 902).financial_status == "refunded"


def test_keys_revoked_in_the_store_stop_the_shop_and_tell_the_owner(woo_app, runtime, store, shop_id):
    store.keys.clear()
    with runtime.sessions.begin() as session:
        job_id = enqueue(session, "woocommerce.sync", shop_id=shop_id, purpose="reconcile")
    work(runtime)
    with runtime.sessions() as session, shop_context(shop_id):
        assert session.get(Shop, shop_id).status == "needs_reauth"
        assert session.get(Job, job_id).status == "dead"
        assert session.scalars(select(ShopAlert)).one().kind == "needs_reauthorization"


# --- write-back ---------------------------------------------------------------------------------------

def _shipment(runtime, shop_id: int, order_platform_id: int) -> int:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        order = session.scalars(select(Order).where(Order.platform_id == str(order_platform_id))).one()
        shipment = Shipment(shop_id=shop_id, order_id=order.id, courier="inpost", idempotency_key=f"o{order.id}",
                            tracking_numbers=["620000000000000000000001"],
                            tracking_url="https://inpost.pl/sledzenie-przesylek?number=620000000000000000000001")
        session.add(shipment)
        session.flush()
        return shipment.id


def _write_tracking(runtime, shop_id: int, shipment_id: int) -> None:
    with runtime.sessions.begin() as session:
        enqueue(session, "woocommerce.write_tracking", shop_id=shop_id, shipment_id=shipment_id)
    work(runtime)


def test_tracking_goes_to_the_tracking_plugin_once_even_when_the_job_runs_twice(woo_app, runtime, store):
    store.add_order(1001)
    answer = connect(woo_app, store)
    work(runtime)
    shop_id = answer.json["shop_id"]
    shipment_id = _shipment(runtime, shop_id, 1001)
    _write_tracking(runtime, shop_id, shipment_id)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.get(Shipment, shipment_id).platform_fulfillment_id = None  # as if the first answer had been lost
    _write_tracking(runtime, shop_id, shipment_id)
    assert [item["tracking_number"] for item in store.trackings[1001]] == ["620000000000000000000001"]
    assert store.trackings[1001][0]["tracking_link"].startswith("https://inpost.pl/")


def test_without_a_tracking_plugin_the_number_goes_into_a_private_order_note(woo_app, runtime):
    with FakeWooCommerce(tracking_plugin=None) as plain:
        plain.add_order(1002)
        shop_id = connect(woo_app, plain).json["shop_id"]
        work(runtime)
        _write_tracking(runtime, shop_id, _shipment(runtime, shop_id, 1002))
        [note] = plain.notes[1002]
    assert "620000000000000000000001" in note["note"] and note["customer_note"] is False


def test_the_echo_of_our_own_tracking_write_changes_nothing(woo_app, runtime, store):
    store.add_order(1003)
    shop_id = connect(woo_app, store).json["shop_id"]
    work(runtime)
    with runtime.sessions.begin() as session:
        session.get(Shop, shop_id).settings = {**session.get(Shop, shop_id).settings, "woocommerce_complete_on_ship": True}
    _write_tracking(runtime, shop_id, _shipment(runtime, shop_id, 1003))
    assert store.orders[1003]["status"] == "completed"

    deliver(woo_app, runtime, store, shop_id, "order.updated", store.orders[1003])  # WooCommerce tells us our own change
    work(runtime)
    with runtime.sessions() as session, shop_context(shop_id):
        event = session.scalars(select(InboundEvent).order_by(InboundEvent.id.desc())).first()
    assert event.status == "ignored" and order_row(runtime, shop_id, 1003).status == "completed"


def test_a_recovery_coupon_is_created_once_single_use_and_for_the_customer_only(woo_app, runtime, store, shop_id):
    with runtime.sessions.begin() as session, shop_context(shop_id):
        customer = Customer(shop_id=shop_id, platform_id="7", email="zofia.nowak@example.pl")
        session.add(customer)
        session.flush()
        coupon = Coupon(shop_id=shop_id, code="wracaj-7k2q", customer_id=customer.id, percent_off=Decimal("10"),
                        expires_at=utcnow() + dt.timedelta(hours=48))
        session.add(coupon)
        session.flush()
        coupon_id = coupon.id
    for _ in range(2):  # the second run is a retry whose first answer was lost
        with runtime.sessions.begin() as session, shop_context(shop_id):
            session.get(Coupon, coupon_id).platform_id = None
            enqueue(session, "woocommerce.create_coupon", shop_id=shop_id, coupon_id=coupon_id)
        work(runtime)
    [made] = store.coupons.values()
    assert (made["code"], made["usage_limit"], made["email_restrictions"]) == ("wracaj-7k2q", 1, ["zofia.nowak@example.pl"])
    assert made["discount_type"] == "percent" and Decimal(made["amount"]) == Decimal("10")
