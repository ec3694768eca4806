"""SMS and web push through the outbox, to a loopback Twilio API and a loopback push service."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from app.models import PushSubscription, Suppression
from app.runtime import build_runtime
from app.tenancy import shop_context
from tests.messaging_fakes import BrowserSubscription, FakePushService, verify_vapid
from tests.outbox_helpers import twilio  # noqa: F401 (fixture)
from tests.outbox_helpers import (CART_CONTEXT, PUBLIC_URL, SHIPPED_CONTEXT, make_marketing_customer, message_row,
                                  provider_env, schedule, work)


@pytest.fixture
def push_service():
    fake = FakePushService().start()
    yield fake
    fake.stop()


@pytest.fixture
def sms_runtime(make_settings, twilio):
    runtime = build_runtime(make_settings(**provider_env(twilio=twilio)))
    yield runtime
    runtime.close()


def test_a_shipping_sms_goes_to_the_e164_number_with_a_status_callback(sms_runtime, twilio):
    shop_id, customer_id = make_marketing_customer(sms_runtime, phone="600 111 222", consent=())
    scheduled = schedule(sms_runtime, shop_id, channel="sms", kind="shipping", template="order_shipped",
                         customer_id=customer_id, context=SHIPPED_CONTEXT, dedupe_parts=("order-1042",))
    work(sms_runtime)
    (request,) = twilio.requests
    assert request["form"]["To"] == "+48600111222"
    assert request["form"]["StatusCallback"] == f"{PUBLIC_URL}/m/twilio/status/{shop_id}/{scheduled.message_id}"
    assert request["form"]["Body"].startswith("Sklep Żółw: zamówienie #1042 wysłane")
    message = message_row(sms_runtime, shop_id, scheduled.message_id)
    assert message.status == "sent" and message.provider_message_id.startswith("SM")


def test_a_marketing_sms_carries_a_signed_opt_out_link(sms_runtime, twilio):
    shop_id, customer_id = make_marketing_customer(sms_runtime, consent=("sms",))
    schedule(sms_runtime, shop_id, channel="sms", kind="recovery", template="cart_reminder", customer_id=customer_id,
             context=CART_CONTEXT, dedupe_parts=("cart-9",))
    work(sms_runtime)
    assert f"STOP: {PUBLIC_URL}/m/u/" in twilio.requests[0]["form"]["Body"]


def test_a_marketing_sms_without_sms_consent_is_not_sent(sms_runtime, twilio):
    shop_id, customer_id = make_marketing_customer(sms_runtime, consent=("email",))
    scheduled = schedule(sms_runtime, shop_id, channel="sms", kind="recovery", template="cart_reminder",
                         customer_id=customer_id, context=CART_CONTEXT, dedupe_parts=("cart-9",))
    work(sms_runtime)
    assert message_row(sms_runtime, shop_id, scheduled.message_id).status == "suppressed" and twilio.requests == []


def test_twilio_error_21610_fails_the_message_and_suppresses_the_number(sms_runtime, twilio):
    twilio.errors["+48600111222"] = (400, {"code": 21610, "message": "unsubscribed recipient", "status": 400}, {})
    shop_id, customer_id = make_marketing_customer(sms_runtime, consent=())
    scheduled = schedule(sms_runtime, shop_id, channel="sms", kind="shipping", template="order_shipped",
                         customer_id=customer_id, context=SHIPPED_CONTEXT, dedupe_parts=("order-1042",))
    work(sms_runtime)
    assert message_row(sms_runtime, shop_id, scheduled.message_id).status == "failed"
    with sms_runtime.sessions() as session, shop_context(shop_id):
        (row,) = session.scalars(select(Suppression)).all()
    assert (row.channel, row.address, row.reason) == ("sms", "+48600111222", "sms_opted_out")


def test_a_shop_that_asks_for_transliteration_sends_without_diacritics(sms_runtime, twilio):
    shop_id, customer_id = make_marketing_customer(sms_runtime, consent=(), shop_fields={
        "settings": {"quiet_hours": None, "sms": {"transliterate": True}}})
    schedule(sms_runtime, shop_id, channel="sms", kind="shipping", template="order_shipped", customer_id=customer_id,
             context=SHIPPED_CONTEXT, dedupe_parts=("order-1042",))
    work(sms_runtime)
    assert twilio.requests[0]["form"]["Body"].startswith("Sklep Zolw: zamowienie #1042 wyslane")


@pytest.fixture
def push_runtime(make_settings, push_service):
    runtime = build_runtime(make_settings(**provider_env(), VAPID_SUBJECT="mailto:ops@companion.example.com"))
    yield runtime
    runtime.close()


def _subscribe(runtime, shop_id, customer_id, endpoint) -> tuple[int, BrowserSubscription]:
    browser = BrowserSubscription.create(endpoint)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        row = PushSubscription(shop_id=shop_id, customer_id=customer_id, endpoint=endpoint, p256dh=browser.p256dh,
                               auth=browser.auth_b64)
        session.add(row)
        session.flush()
        return row.id, browser


def test_a_cart_push_arrives_encrypted_signed_and_collapsible_by_topic(push_runtime, push_service):
    shop_id, customer_id = make_marketing_customer(push_runtime, consent=())
    subscription_id, browser = _subscribe(push_runtime, shop_id, customer_id, f"{push_service.origin}/push/marta")
    scheduled = schedule(push_runtime, shop_id, channel="push", kind="recovery", template="cart_reminder",
                         customer_id=customer_id, push_subscription_id=subscription_id, push_topic="cart-9",
                         context={**CART_CONTEXT, "url": "https://shop.example.pl/cart"}, dedupe_parts=("cart-9",))
    work(push_runtime)
    (receipt,) = push_service.received
    assert json.loads(browser.decrypt(receipt.body)) == {
        "title": "Sklep Żółw", "body": "Twój koszyk czeka: 2 produkty, 39,80 zł", "url": "https://shop.example.pl/cart"}
    assert verify_vapid(receipt.headers["Authorization"], push_service.origin)["sub"] == "mailto:ops@companion.example.com"
    assert (receipt.headers["Topic"], receipt.headers["TTL"], receipt.headers["Urgency"]) == ("cart-9", "86400", "normal")
    assert message_row(push_runtime, shop_id, scheduled.message_id).status == "sent"


def test_a_gone_subscription_is_deleted_and_the_message_failed(push_runtime, push_service):
    push_service.answers["/push/old"] = (410, {})
    shop_id, customer_id = make_marketing_customer(push_runtime, consent=())
    subscription_id, _ = _subscribe(push_runtime, shop_id, customer_id, f"{push_service.origin}/push/old")
    scheduled = schedule(push_runtime, shop_id, channel="push", kind="shipping", template="order_shipped",
                         customer_id=customer_id, push_subscription_id=subscription_id, context=SHIPPED_CONTEXT,
                         dedupe_parts=("order-1042",))
    work(push_runtime)
    assert message_row(push_runtime, shop_id, scheduled.message_id).status == "failed"
    with push_runtime.sessions() as session, shop_context(shop_id):
        assert session.get(PushSubscription, subscription_id) is None


def test_a_batch_of_pushes_arrives_once_each_over_reused_connections(push_runtime, push_service):
    push_service.answers["/push/3"] = (410, {})
    shop_id, customer_id = make_marketing_customer(  # one customer's eight browsers; no cap, so all may go
        push_runtime, consent=(), shop_fields={"settings": {"quiet_hours": None, "frequency_cap": None}})
    subscriptions = [_subscribe(push_runtime, shop_id, customer_id, f"{push_service.origin}/push/{n}") for n in range(8)]
    ids = [schedule(push_runtime, shop_id, channel="push", kind="shipping", template="order_shipped",
                    customer_id=customer_id, push_subscription_id=subscription_id, context=SHIPPED_CONTEXT,
                    dedupe_parts=("order-1042", n)).message_id for n, (subscription_id, _) in enumerate(subscriptions)]
    work(push_runtime)
    assert sorted(receipt.path for receipt in push_service.received) == sorted(f"/push/{n}" for n in range(8))
    assert [message_row(push_runtime, shop_id, m).status for m in ids] == ["sent"] * 3 + ["failed"] + ["sent"] * 4
    for receipt in push_service.received:
        browser = subscriptions[int(receipt.path.rsplit("/", 1)[1])][1]
        assert json.loads(browser.decrypt(receipt.body))["title"] == "Sklep Żółw"
    # Connections were kept: far fewer client ports than pushes.
    assert len({receipt.peer_port for receipt in push_service.received}) <= 3


def test_the_segment_count_is_recorded_before_the_sms_leaves(sms_runtime, twilio):
    shop_id, customer_id = make_marketing_customer(sms_runtime, consent=())
    scheduled = schedule(sms_runtime, shop_id, channel="sms", kind="shipping", template="order_shipped",
                         customer_id=customer_id, context=SHIPPED_CONTEXT, dedupe_parts=("order-1042",))
    work(sms_runtime)
    message = message_row(sms_runtime, shop_id, scheduled.message_id)
    assert message.context["_sms"] == {"segments": 2, "encoding": "UCS-2"}  # "Żółw", "wysłane": UCS-2, over 70
    assert [e["gate"] for e in message.gate_trace][-2:] == ["sms_budget", "send"]


def test_a_marketing_sms_over_the_shops_monthly_budget_is_not_sent(sms_runtime, twilio):
    shop_id, customer_id = make_marketing_customer(sms_runtime, consent=("sms",), shop_fields={
        "settings": {"quiet_hours": None, "frequency_cap": None, "sms": {"monthly_segment_budget": 3}}})
    first = schedule(sms_runtime, shop_id, channel="sms", kind="recovery", template="cart_reminder",
                     customer_id=customer_id, context=CART_CONTEXT, dedupe_parts=("cart-9",))
    second = schedule(sms_runtime, shop_id, channel="sms", kind="recovery", template="cart_reminder",
                      customer_id=customer_id, context=CART_CONTEXT, dedupe_parts=("cart-10",))
    work(sms_runtime)
    statuses = sorted(message_row(sms_runtime, shop_id, m.message_id).status for m in (first, second))
    assert statuses == ["cancelled", "sent"] and len(twilio.requests) == 1
