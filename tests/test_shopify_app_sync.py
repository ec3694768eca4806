"""The Shopify app end to end against the loopback fake Shopify: install, sync, reconcile, token refresh, write-back."""
from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import func, select, text

from app.jobs.executors.local import LocalWorker
from app.jobs.queue import enqueue
from app.models import Cart, Coupon, Customer, Job, Order, Product, Shipment, Shop, SyncRun, utcnow
from app.shopify.access import ShopNeedsReauthorization, fresh_access_token, oauth_client, store_tokens
from app.tenancy import shop_context
from connectors.shopify import encode_session_token, sign_query
from tests.factories import make_shop
from tests.fake_shopify import FakeShopify

API_KEY, SECRET = "companion-client-id", "shpss_current_secret"
SHOP = "kwiaciarnia-roza.myshopify.com"
PUBLIC_URL = "https://companion.example.com"


@pytest.fixture
def fake():
    with FakeShopify(client_id=API_KEY, client_secret=SECRET) as server:
        yield server


@pytest.fixture
def shopify_app(make_settings, fake):
    from app import create_app

    app = create_app(make_settings(SHOPIFY_API_KEY=API_KEY, SHOPIFY_API_SECRET=SECRET, PUBLIC_URL=PUBLIC_URL,
                                   SHOPIFY_ADMIN_BASE_URL=fake.url))
    yield app
    app.extensions["companion"].close()


@pytest.fixture
def runtime(shopify_app):
    return shopify_app.extensions["companion"]


@pytest.fixture
def installed_shop(runtime):
    """A shop installed earlier, holding the fake's non-expiring token."""
    with runtime.sessions.begin() as session:
        return make_shop(session, SHOP, credentials={"access_token": "shpat_fake_token"}).id


def signed(params: dict, secret: str = SECRET) -> dict:
    params = {**params, "timestamp": str(int(time.time()))}
    return {**params, "hmac": sign_query(params, secret)}


def work(runtime) -> None:
    LocalWorker(runtime).run(exit_when_idle=True)


def run_job(runtime, kind: str, shop_id: int, **args) -> Job:
    with runtime.sessions.begin() as session:
        job_id = enqueue(session, kind, shop_id=shop_id, **args)
    work(runtime)
    with runtime.sessions() as session:
        return session.get(Job, job_id)


def count(runtime, shop_id: int, model) -> int:
    with runtime.sessions() as session, shop_context(shop_id):
        return session.scalar(select(func.count()).select_from(model))


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_full_install_stores_the_token_encrypted_registers_webhooks_and_imports_the_shop(shopify_app, runtime, fake):
    customer = fake.add_customer(4001)
    fake.add_order(5001, customer_id=customer)
    fake.add_order(5002)
    fake.add_abandoned_checkout(6001, customer_id=customer)
    fake.add_product(7001)
    client = shopify_app.test_client()

    grant = client.get("/install", query_string=signed({"shop": SHOP}))
    assert grant.status_code == 302
    location = urlsplit(grant.headers["Location"])
    asked = parse_qs(location.query)
    assert location.netloc == SHOP and location.path == "/admin/oauth/authorize"
    assert asked["client_id"] == [API_KEY] and asked["redirect_uri"] == [f"{PUBLIC_URL}/auth/callback"]

    code = fake.issue_authorization_code()
    back = client.get("/auth/callback", query_string=signed({"shop": SHOP, "code": code, "state": asked["state"][0]}))
    assert back.status_code == 302 and back.headers["Location"] == f"https://{SHOP}/admin/apps/{API_KEY}"

    work(runtime)
    with runtime.sessions() as session:
        shop = session.scalars(select(Shop).where(Shop.domain == SHOP)).one()
        token = shop.credentials.reveal()["access_token"]
        stored = session.execute(text("SELECT credentials FROM shops WHERE id = :id"), {"id": shop.id}).scalar()
    assert token in fake.access_tokens and token not in str(stored), "the token is held, and only encrypted"
    assert {(s["topic"], s["uri"]) for s in fake.subscriptions.values()} >= {
        ("ORDERS_CREATE", f"{PUBLIC_URL}/webhooks/shopify"), ("APP_UNINSTALLED", f"{PUBLIC_URL}/webhooks/shopify")}
    assert (count(runtime, shop.id, Customer), count(runtime, shop.id, Order),
            count(runtime, shop.id, Cart), count(runtime, shop.id, Product)) == (1, 2, 1, 1)
    with runtime.sessions() as session, shop_context(shop.id):
        runs = session.scalars(select(SyncRun).where(SyncRun.kind == "initial")).all()
    assert sorted((run.resource, run.status) for run in runs) == [
        ("abandoned_checkouts", "done"), ("customers", "done"), ("orders", "done"), ("products", "done")]


def test_a_callback_replaying_a_used_state_is_refused(shopify_app, runtime, fake):
    client = shopify_app.test_client()
    state = parse_qs(urlsplit(client.get("/install", query_string=signed({"shop": SHOP})).headers["Location"]).query)["state"][0]
    assert client.get("/auth/callback", query_string=signed(
        {"shop": SHOP, "code": fake.issue_authorization_code(), "state": state})).status_code == 302
    replay = client.get("/auth/callback", query_string=signed(
        {"shop": SHOP, "code": fake.issue_authorization_code(), "state": state}))
    assert replay.status_code == 403 and replay.json["error"] == "invalid_state"


def test_a_callback_for_another_shop_than_the_state_was_issued_for_is_refused(shopify_app, fake):
    client = shopify_app.test_client()
    state = parse_qs(urlsplit(client.get("/install", query_string=signed({"shop": SHOP})).headers["Location"]).query)["state"][0]
    other = client.get("/auth/callback", query_string=signed(
        {"shop": "someone-else.myshopify.com", "code": fake.issue_authorization_code(), "state": state}))
    assert other.status_code == 403 and other.json["error"] == "invalid_state"


def test_a_callback_with_a_code_shopify_refuses_answers_403_and_creates_no_shop(shopify_app, runtime):
    client = shopify_app.test_client()
    state = parse_qs(urlsplit(client.get("/install", query_string=signed({"shop": SHOP})).headers["Location"]).query)["state"][0]
    refused = client.get("/auth/callback", query_string=signed({"shop": SHOP, "code": "never-issued", "state": state}))
    assert refused.status_code == 403 and refused.json["error"] == "code_refused"
    with runtime.sessions() as session:
        assert session.scalars(select(Shop).where(Shop.domain == SHOP)).first() is None


def test_a_bulk_import_that_takes_several_polls_shows_its_progress_and_completes(runtime, fake, installed_shop):
    fake.bulk_polls_before_complete = 2
    fake.add_order(5001)
    job = run_job(runtime, "shopify.start_initial_sync", installed_shop)
    assert job.status == "succeeded"
    with runtime.sessions() as session, shop_context(installed_shop):
        first = session.scalars(select(SyncRun).order_by(SyncRun.id)).first()
        assert (first.resource, first.status) == ("customers", "running"), "still running: polled again later"
        waiting = session.scalars(select(Job).where(Job.kind == "shopify.sync_step", Job.status == "queued")).one()
        assert waiting.due_at > utcnow()
    for _ in range(40):  # each step is a poll the clock would run BULK_POLL_SECONDS later; run them now
        with runtime.sessions.begin() as session:
            session.execute(text("UPDATE jobs SET due_at = :now WHERE status = 'queued'"), {"now": utcnow()})
        work(runtime)
        with runtime.sessions() as session, shop_context(installed_shop):
            if all(run.status == "done" for run in session.scalars(select(SyncRun))):
                break
    assert count(runtime, installed_shop, Order) == 1
    with runtime.sessions() as session, shop_context(installed_shop):
        orders_run = session.scalars(select(SyncRun).where(SyncRun.resource == "orders")).one()
    assert (orders_run.status, orders_run.records_done) == ("done", 1)


def test_an_order_whose_webhook_was_dropped_is_caught_by_the_next_reconciliation(runtime, fake, installed_shop):
    assert run_job(runtime, "shopify.reconcile", installed_shop).status == "succeeded"
    fake.add_order(5009, updated_at=iso(utcnow()), total="499.00")  # its orders/create webhook never arrived

    assert run_job(runtime, "shopify.reconcile", installed_shop).status == "succeeded"
    with runtime.sessions() as session, shop_context(installed_shop):
        order = session.scalars(select(Order).where(Order.platform_id == "5009")).one()
    assert (order.total, order.currency) == (Decimal("499.00"), "PLN")


def test_reconciliation_asks_only_for_what_changed_since_its_cursor_minus_an_overlap(runtime, fake, installed_shop):
    before_first = utcnow()
    run_job(runtime, "shopify.reconcile", installed_shop)
    run_job(runtime, "shopify.reconcile", installed_shop)
    second = fake.requests_for("OrdersUpdatedSince")[-1].variables["query"]
    since = dt.datetime.fromisoformat(second.split("updated_at:>=")[1].strip("'\" ").replace("Z", "+00:00"))
    assert before_first - dt.timedelta(minutes=11) <= since <= before_first, second


def test_the_daily_webhook_check_recreates_a_subscription_shopify_dropped(runtime, fake, installed_shop):
    run_job(runtime, "shopify.register_webhooks", installed_shop)
    created = len(fake.subscriptions)
    dropped = next(gid for gid, s in fake.subscriptions.items() if s["topic"] == "ORDERS_UPDATED")
    del fake.subscriptions[dropped]

    run_job(runtime, "shopify.register_webhooks", installed_shop)
    assert len(fake.subscriptions) == created
    assert any(s["topic"] == "ORDERS_UPDATED" for s in fake.subscriptions.values())


def test_a_topic_shopify_refuses_is_recorded_for_the_owner_and_the_others_are_still_created(runtime, fake, installed_shop):
    fake.refuse_topic("CUSTOMERS_UPDATE")
    assert run_job(runtime, "shopify.register_webhooks", installed_shop).status == "succeeded"
    with runtime.sessions() as session:
        refused = session.get(Shop, installed_shop).settings["shopify_webhook_errors"]
    assert list(refused) == ["customers/update"] and "protected customer data" in refused["customers/update"]
    assert any(s["topic"] == "ORDERS_CREATE" for s in fake.subscriptions.values())


def _shop_with_expiring_token(runtime, fake, *, expired: bool) -> int:
    tokens = oauth_client(runtime.settings).exchange_code(SHOP, fake.issue_authorization_code(), utcnow())
    with runtime.sessions.begin() as session:
        shop = make_shop(session, SHOP)
        store_tokens(shop, tokens)
        if expired:
            shop.access_token_expires_at = utcnow() - dt.timedelta(minutes=1)
        return shop.id


def _refreshes(fake) -> int:
    return sum(1 for r in fake.requests if r.path == "/admin/oauth/access_token"
               and isinstance(r.body, dict) and r.body.get("grant_type") == "refresh_token")


def test_two_workers_needing_a_refresh_at_once_refresh_the_token_only_once(runtime, fake):
    shop_id = _shop_with_expiring_token(runtime, fake, expired=True)
    start, tokens, errors = threading.Barrier(2), [], []

    def worker():
        start.wait()
        try:
            tokens.append(fresh_access_token(runtime.sessions, runtime.settings, shop_id))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and _refreshes(fake) == 1
    assert len(set(tokens)) == 1 and tokens[0] in fake.access_tokens


def test_a_token_that_is_still_fresh_is_used_without_a_refresh(runtime, fake):
    shop_id = _shop_with_expiring_token(runtime, fake, expired=False)
    fresh_access_token(runtime.sessions, runtime.settings, shop_id)
    assert _refreshes(fake) == 0


def test_a_refused_refresh_marks_the_shop_for_reauthorization_and_its_jobs_stop_retrying(runtime, fake):
    shop_id = _shop_with_expiring_token(runtime, fake, expired=True)
    for held in fake.refresh_tokens.values():
        held["used"] = True  # revoked on Shopify's side

    with pytest.raises(ShopNeedsReauthorization):
        fresh_access_token(runtime.sessions, runtime.settings, shop_id)
    job = run_job(runtime, "shopify.reconcile", shop_id)
    with runtime.sessions() as session:
        assert session.get(Shop, shop_id).status == "needs_reauth"
    assert (job.status, job.attempts) == ("dead", 1)


def test_a_revoked_access_token_marks_the_shop_for_reauthorization(runtime, fake):
    with runtime.sessions.begin() as session:
        shop_id = make_shop(session, SHOP, credentials={"access_token": "shpat_revoked"}).id
    job = run_job(runtime, "shopify.reconcile", shop_id)
    with runtime.sessions() as session:
        assert session.get(Shop, shop_id).status == "needs_reauth"
    assert job.status in ("dead", "failed") and job.attempts == 1


def _shipment(runtime, shop_id: int, order_platform_id: str, **fields) -> int:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        order = Order(shop_id=shop_id, platform_id=order_platform_id, total=Decimal("249.90"), currency="PLN")
        session.add(order)
        session.flush()
        shipment = Shipment(shop_id=shop_id, order_id=order.id, courier="inpost", idempotency_key=f"o{order.id}",
                            tracking_numbers=["620000000000000000000001"],
                            tracking_url="https://inpost.pl/sledzenie-przesylek?number=620000000000000000000001", **fields)
        session.add(shipment)
        session.flush()
        return shipment.id


def test_a_shipment_is_written_back_as_a_fulfillment_with_company_number_and_url(runtime, fake, installed_shop):
    fake.add_order(5001)
    shipment_id = _shipment(runtime, installed_shop, "5001")
    assert run_job(runtime, "shopify.fulfill_shipment", installed_shop, shipment_id=shipment_id).status == "succeeded"
    [fulfillment] = fake.fulfillments
    assert fulfillment["tracking_info"] == {"company": "InPost", "number": "620000000000000000000001",
                                           "url": "https://inpost.pl/sledzenie-przesylek?number=620000000000000000000001"}
    assert fulfillment["notify_customer"] is False, "Shopify's own shipping email stays off unless the owner wants it"


def test_a_shipment_written_back_once_is_never_fulfilled_twice(runtime, fake, installed_shop):
    fake.add_order(5001)
    shipment_id = _shipment(runtime, installed_shop, "5001")
    run_job(runtime, "shopify.fulfill_shipment", installed_shop, shipment_id=shipment_id)
    run_job(runtime, "shopify.fulfill_shipment", installed_shop, shipment_id=shipment_id)
    assert len(fake.fulfillments) == 1


def test_the_owner_can_have_shopify_notify_the_customer(runtime, fake, installed_shop):
    with runtime.sessions.begin() as session:
        session.get(Shop, installed_shop).settings = {"shopify_notify_customer": True}
    fake.add_order(5001)
    run_job(runtime, "shopify.fulfill_shipment", installed_shop, shipment_id=_shipment(runtime, installed_shop, "5001"))
    assert fake.fulfillments[0]["notify_customer"] is True


def test_a_recovery_coupon_becomes_a_single_use_code_bound_to_the_customer(runtime, fake, installed_shop):
    with runtime.sessions.begin() as session, shop_context(installed_shop):
        customer = Customer(shop_id=installed_shop, platform_id="4001", email="zofia.nowak@example.pl")
        session.add(customer)
        session.flush()
        coupon = Coupon(shop_id=installed_shop, code="WRACAJ-7K2Q", customer_id=customer.id, percent_off=Decimal("10"),
                        expires_at=utcnow() + dt.timedelta(hours=48))
        session.add(coupon)
        session.flush()
        coupon_id = coupon.id
    assert run_job(runtime, "shopify.create_discount", installed_shop, coupon_id=coupon_id).status == "succeeded"
    sent = fake.discounts["WRACAJ-7K2Q"]
    assert sent["usageLimit"] == 1 and sent["appliesOncePerCustomer"] is True
    assert sent["customerGets"]["value"]["percentage"] == pytest.approx(0.10)
    assert "gid://shopify/Customer/4001" in str(sent.get("context") or sent.get("customerSelection"))
    with runtime.sessions() as session, shop_context(installed_shop):
        assert session.get(Coupon, coupon_id).platform_id.startswith("gid://shopify/DiscountCodeNode/") or \
            session.get(Coupon, coupon_id).platform_id.isdigit()


def test_the_embedded_admin_reads_sync_progress_with_a_session_token(shopify_app, runtime, installed_shop):
    now = int(time.time())
    token = encode_session_token({"iss": f"https://{SHOP}/admin", "dest": f"https://{SHOP}", "aud": API_KEY,
                                  "sub": "42", "exp": now + 60, "nbf": now - 5, "iat": now - 5, "jti": "x", "sid": "s"}, SECRET)
    answer = shopify_app.test_client().get("/shopify/admin/status", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.json["shop"] == SHOP and answer.json["status"] == "active"


@pytest.mark.parametrize("claims, problem", [
    ({"aud": "another-app"}, "audience mismatch"),
    ({"exp": int(time.time()) - 120}, "token expired"),
    ({"dest": "https://other-shop.myshopify.com"}, "issuer and destination differ"),
])
def test_the_embedded_admin_refuses_a_session_token_that_does_not_check_out(shopify_app, installed_shop, claims, problem):
    now = int(time.time())
    base = {"iss": f"https://{SHOP}/admin", "dest": f"https://{SHOP}", "aud": API_KEY, "sub": "42",
            "exp": now + 60, "nbf": now - 5, "iat": now - 5}
    token = encode_session_token({**base, **claims}, SECRET)
    answer = shopify_app.test_client().get("/shopify/admin/status", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401 and problem in answer.json["message"]


def test_the_embedded_admin_refuses_a_request_without_a_session_token(shopify_app, installed_shop):
    answer = shopify_app.test_client().get("/shopify/admin/status")
    assert answer.status_code == 401 and answer.json["error"] == "missing_session_token"
