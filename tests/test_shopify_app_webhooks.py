"""Shopify webhooks end to end: verified on the raw body, stored once, applied newer-wins, compliance honoured."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import io
import json
import re
import secrets

import pytest
from sqlalchemy import func, select

from app.jobs.executors.local import LocalWorker
from app.jobs.queue import enqueue
from app.models import Consent, Customer, DataExport, InboundEvent, Job, Order, Shop, utcnow
from app.tenancy import shop_context
from tests import shopify_payloads as payloads
from tests.data_search import tables_mentioning
from tests.factories import make_shop

API_KEY, SECRET, OLD_SECRET = "companion-client-id", "shpss_current_secret", "shpss_previous_secret"


@pytest.fixture
def shopify_app(make_settings):
    from app import create_app

    app = create_app(make_settings(SHOPIFY_API_KEY=API_KEY, SHOPIFY_API_SECRET=SECRET,
                                   SHOPIFY_PREVIOUS_API_SECRET=OLD_SECRET))
    yield app
    app.extensions["companion"].close()


@pytest.fixture
def runtime_of_app(shopify_app):
    return shopify_app.extensions["companion"]


@pytest.fixture
def shop_id(runtime_of_app):
    with runtime_of_app.sessions.begin() as session:
        return make_shop(session, payloads.SHOP_DOMAIN, credentials={"access_token": "shpat_x"}).id


def signature(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def deliver(app, topic: str, payload: dict | bytes, *, secret: str = SECRET, webhook_id: str | None = None,
            shop: str = payloads.SHOP_DOMAIN, sign: bool = True, path: str = "/webhooks/shopify"):
    body = payload if isinstance(payload, bytes) else payloads.raw(payload)
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Shop-Domain": shop,
        "X-Shopify-Webhook-Id": webhook_id or secrets.token_hex(8),
        "X-Shopify-Event-Id": secrets.token_hex(8),
        "X-Shopify-Triggered-At": "2026-11-20T09:00:00.000Z",
        "X-Shopify-API-Version": "2026-01",
    }
    if sign:
        headers["X-Shopify-Hmac-Sha256"] = signature(body, secret)
    return app.test_client().post(path, data=body, headers=headers)


def work(runtime) -> None:
    LocalWorker(runtime).run(exit_when_idle=True)


def _count(runtime, model) -> int:
    with runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(model).execution_options(all_shops=True))


def test_a_signed_webhook_is_stored_with_its_ingest_job_and_acknowledged(shopify_app, runtime_of_app, shop_id):
    response = deliver(shopify_app, "orders/create", payloads.order())
    assert response.status_code == 200 and response.json["status"] == "accepted"
    with runtime_of_app.sessions() as session, shop_context(shop_id):
        event = session.scalars(select(InboundEvent)).one()
        job = session.scalars(select(Job).where(Job.kind == "shopify.ingest_event")).one()
    assert event.topic == "orders/create" and event.headers["api_version"] == "2026-01"
    assert event.body == payloads.raw(payloads.order())
    assert job.args == {"event_id": event.id} and job.shop_id == shop_id


@pytest.mark.parametrize("tamper", ["forged", "body_changed", "re_serialised", "unsigned"])
def test_a_webhook_that_does_not_verify_is_refused_and_nothing_is_stored(shopify_app, runtime_of_app, shop_id, tamper):
    body = payloads.raw(payloads.order())
    if tamper == "forged":
        response = deliver(shopify_app, "orders/create", body, secret="guessed-secret")
    elif tamper == "body_changed":
        headers_body = body.replace(b"249.90", b"0.01")
        response = shopify_app.test_client().post("/webhooks/shopify", data=headers_body, headers={
            "X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": payloads.SHOP_DOMAIN,
            "X-Shopify-Webhook-Id": "w-1", "X-Shopify-Hmac-Sha256": signature(body)})
    elif tamper == "re_serialised":
        reserialised = json.dumps(json.loads(body)).encode()  # same data, other bytes: '/' no longer escaped
        response = shopify_app.test_client().post("/webhooks/shopify", data=reserialised, headers={
            "X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": payloads.SHOP_DOMAIN,
            "X-Shopify-Webhook-Id": "w-1", "X-Shopify-Hmac-Sha256": signature(body)})
    else:
        response = deliver(shopify_app, "orders/create", body, sign=False)
    assert response.status_code == 401 and response.json["error"] == "invalid_signature"
    assert _count(runtime_of_app, InboundEvent) == 0 and _count(runtime_of_app, Job) == 0


def test_the_previous_secret_still_verifies_during_a_rotation(shopify_app, shop_id):
    assert deliver(shopify_app, "orders/create", payloads.order(), secret=OLD_SECRET).status_code == 200


def test_a_signed_webhook_missing_a_required_header_gets_400_naming_it(shopify_app, shop_id):
    body = payloads.raw(payloads.order())
    response = shopify_app.test_client().post("/webhooks/shopify", data=body, headers={
        "X-Shopify-Topic": "orders/create", "X-Shopify-Shop-Domain": payloads.SHOP_DOMAIN,
        "X-Shopify-Hmac-Sha256": signature(body)})
    assert response.status_code == 400 and "webhook" in response.json["message"].lower()


def test_a_duplicate_delivery_is_stored_and_ingested_once(shopify_app, runtime_of_app, shop_id):
    first = deliver(shopify_app, "orders/create", payloads.order(), webhook_id="same-delivery")
    second = deliver(shopify_app, "orders/create", payloads.order(), webhook_id="same-delivery")
    assert (first.json["status"], second.json["status"]) == ("accepted", "duplicate")
    assert _count(runtime_of_app, InboundEvent) == 1 and _count(runtime_of_app, Job) == 1


def test_a_webhook_for_a_shop_we_do_not_hold_is_acknowledged_and_dropped(shopify_app, runtime_of_app):
    response = deliver(shopify_app, "orders/create", payloads.order(), shop="nieznany.myshopify.com")
    assert response.status_code == 200 and response.json["status"] == "ignored"
    assert _count(runtime_of_app, InboundEvent) == 0


def test_out_of_order_deliveries_leave_the_newest_state(shopify_app, runtime_of_app, shop_id):
    deliver(shopify_app, "orders/cancelled", payloads.order(updated_at="2026-11-20T12:00:00+01:00",
                                                           cancelled_at="2026-11-20T12:00:00+01:00", financial_status="refunded"))
    deliver(shopify_app, "orders/paid", payloads.order(updated_at="2026-11-20T10:00:00+01:00"))
    work(runtime_of_app)
    with runtime_of_app.sessions() as session, shop_context(shop_id):
        held = session.scalars(select(Order)).one()
    assert held.financial_status == "refunded" and held.cancelled_at is not None
    assert str(held.total) .startswith("249.9") and held.currency == "PLN"


def test_a_customer_update_records_the_marketing_consent(shopify_app, runtime_of_app, shop_id):
    deliver(shopify_app, "customers/update", payloads.customer(email_state="subscribed"))
    deliver(shopify_app, "customers/update", payloads.customer(updated_at="2026-11-21T10:00:00+01:00", email_state="unsubscribed"))
    work(runtime_of_app)
    with runtime_of_app.sessions() as session, shop_context(shop_id):
        email_states = session.scalars(select(Consent.state).where(Consent.channel == "email").order_by(Consent.id)).all()
    assert email_states == ["granted", "revoked"]


def test_uninstalling_revokes_the_credentials_and_cancels_the_shops_queued_jobs(shopify_app, runtime_of_app, shop_id):
    with runtime_of_app.sessions.begin() as session:
        waiting = enqueue(session, "noop", shop_id=shop_id, due_at=utcnow() + dt.timedelta(hours=1))
    deliver(shopify_app, "app/uninstalled", payloads.app_uninstalled())
    work(runtime_of_app)
    with runtime_of_app.sessions() as session:
        shop = session.get(Shop, shop_id)
        assert (shop.status, shop.credentials) == ("uninstalled", None)
        assert session.get(Job, waiting).status == "cancelled"


def test_a_data_request_produces_an_export_of_everything_held(shopify_app, runtime_of_app, shop_id):
    deliver(shopify_app, "customers/update", payloads.customer())
    deliver(shopify_app, "orders/create", payloads.order())
    work(runtime_of_app)
    deliver(shopify_app, "customers/data_request", payloads.data_request(115310627314723954, "zofia.nowak@example.pl", "+48600111222"),
            path="/webhooks/shopify/compliance")
    work(runtime_of_app)
    with runtime_of_app.sessions() as session, shop_context(shop_id):
        export = session.scalars(select(DataExport)).one()
    assert export.request_key == "shopify:9999" and export.status == "ready"
    assert [c["email"] for c in export.content["customers"]] == ["zofia.nowak@example.pl"]
    assert [o["number"] for o in export.content["orders"]] == ["#1001"]
    assert export.content["consents"]


def test_customer_redaction_erases_the_email_and_phone_from_every_table(shopify_app, runtime_of_app, shop_id):
    email, phone = "zofia.nowak@example.pl", "+48600111222"
    deliver(shopify_app, "customers/update", payloads.customer())
    deliver(shopify_app, "orders/create", payloads.order())
    work(runtime_of_app)
    assert tables_mentioning(runtime_of_app.engine, email, phone)

    deliver(shopify_app, "customers/redact", payloads.customer_redact(115310627314723954, email, phone),
            path="/webhooks/shopify/compliance")
    work(runtime_of_app)
    assert tables_mentioning(runtime_of_app.engine, email, phone, "Zofia") == {}
    with runtime_of_app.sessions() as session, shop_context(shop_id):
        assert session.scalars(select(Order.number)).all() == ["#1001"], "the order stays for the books, anonymised"


def test_shop_redaction_erases_the_shop_and_everything_it_owned(shopify_app, runtime_of_app, shop_id):
    deliver(shopify_app, "customers/update", payloads.customer())
    deliver(shopify_app, "orders/create", payloads.order())
    work(runtime_of_app)
    deliver(shopify_app, "shop/redact", payloads.shop_redact(), path="/webhooks/shopify/compliance")
    work(runtime_of_app)
    assert tables_mentioning(runtime_of_app.engine, "zofia", payloads.SHOP_DOMAIN) == {}
    assert _count(runtime_of_app, Customer) == 0
    with runtime_of_app.sessions() as session:
        erase = session.scalars(select(Job).where(Job.kind == "privacy.erase_shop")).one()
    assert erase.status == "succeeded"


def test_a_body_over_the_size_cap_gets_a_413_with_a_json_error_and_nothing_is_stored(shopify_app, runtime_of_app, shop_id):
    oversized = b'{"id": 1, "note": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = deliver(shopify_app, "orders/create", oversized)
    assert response.status_code == 413
    assert response.json["error"] == "request_entity_too_large"
    assert _count(runtime_of_app, InboundEvent) == 0 and _count(runtime_of_app, Job) == 0


def test_a_body_sent_without_a_declared_length_is_verified_on_its_exact_bytes(shopify_app, runtime_of_app, shop_id):
    body = payloads.raw(payloads.order())
    headers = {"Content-Type": "application/json", "X-Shopify-Topic": "orders/create",
               "X-Shopify-Shop-Domain": payloads.SHOP_DOMAIN, "X-Shopify-Webhook-Id": secrets.token_hex(8),
               "X-Shopify-Hmac-Sha256": signature(body)}
    environ = {"wsgi.input_terminated": True, "CONTENT_LENGTH": ""}  # chunked: the server ends the stream
    response = shopify_app.test_client().post("/webhooks/shopify", input_stream=io.BytesIO(body), headers=headers,
                                              environ_overrides=environ)
    assert response.status_code == 200 and response.json["status"] == "accepted"
    with runtime_of_app.sessions() as session, shop_context(shop_id):
        assert session.scalars(select(InboundEvent)).one().body == body


# --- the endpoint is a lean route (app/web/lean_routes.py): what Flask gave it must still hold --------------------

def test_a_get_to_the_webhook_address_gets_a_405_naming_post(shopify_app):
    response = shopify_app.test_client().get("/webhooks/shopify")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"
    assert response.json["error"] == "method_not_allowed"
    assert len(response.headers["X-Request-Id"]) == 32


def test_a_database_failure_answers_500_with_the_request_id_so_shopify_retries_and_nothing_half_stored(
        shopify_app, runtime_of_app, shop_id, caplog):
    with runtime_of_app.engine.begin() as conn:  # the job table gone: the event's transaction cannot commit
        conn.exec_driver_sql("ALTER TABLE jobs RENAME TO jobs_away")
    try:
        response = deliver(shopify_app, "orders/create", payloads.order())
    finally:
        with runtime_of_app.engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE jobs_away RENAME TO jobs")
    assert response.status_code == 500 and response.json["error"] == "internal_error"
    assert response.json["request_id"] == response.headers["X-Request-Id"]
    assert any(record.message == "unhandled error" and record.exc_info for record in caplog.records)
    assert _count(runtime_of_app, InboundEvent) == 0
    assert deliver(shopify_app, "orders/create", payloads.order()).json["status"] == "accepted"  # Shopify's retry


def test_webhooks_are_counted_in_the_metrics_under_their_route(shopify_app, shop_id):
    def served(endpoint: str) -> float:  # the counters belong to the process: compare before and after
        text = shopify_app.test_client().get("/metrics").get_data(as_text=True)
        found = re.search(re.escape(f'companion_http_requests_total{{endpoint="{endpoint}",method="POST",status="200"}} ')
                          + r"([\d.]+)", text)
        return float(found.group(1)) if found else 0.0

    before = served("/webhooks/shopify"), served("/webhooks/shopify/<path:_subpath>")
    deliver(shopify_app, "orders/create", payloads.order())
    deliver(shopify_app, "orders/create", payloads.order(order_id=77))
    deliver(shopify_app, "shop/redact", payloads.shop_redact(), path="/webhooks/shopify/compliance")
    assert served("/webhooks/shopify") == before[0] + 2
    assert served("/webhooks/shopify/<path:_subpath>") == before[1] + 1


def test_other_addresses_beside_the_webhook_path_still_reach_the_app(shopify_app):
    assert shopify_app.test_client().post("/webhooks/shopifyx").status_code == 404
    assert shopify_app.test_client().get("/healthz").status_code == 200
