"""A customer's data can be exported in full and erased from every table; a shop can be erased entirely."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from app.inbox import accept_event
from app.models import (Cart, Consent, Customer, InboundEvent, Message, Order, PushSubscription, Shipment, Shop,
                        Suppression, TrackingEvent, utcnow)
from app.store.privacy import export_customer_data, erase_shop, hashed_address, redact_customer
from app.tenancy import shop_context
from tests.data_search import tables_mentioning
from tests.factories import make_customer, make_order, make_shop

EMAIL, PHONE = "marta.kowalska@example.pl", "+48600111222"


@pytest.fixture
def customer_everywhere(runtime):
    """A customer whose data sits in every kind of row we keep, plus a bystander in the same shop."""
    with runtime.sessions.begin() as session:
        shop = make_shop(session)
        marta = make_customer(session, shop, EMAIL, phone=PHONE, platform_id="9001", first_name="Marta")
        bystander = make_customer(session, shop, "jan@example.pl", platform_id="9002")
        order = make_order(session, shop, marta, platform_id="A-1", phone=PHONE,
                           shipping_address={"name": "Marta Kowalska", "city": "Kraków", "phone": PHONE})
        make_order(session, shop, bystander, platform_id="B-1")
        session.add_all([
            Cart(shop_id=shop.id, platform_token="c1", email=EMAIL, phone=PHONE, currency="PLN", customer_id=marta.id),
            Consent(shop_id=shop.id, customer_id=marta.id, channel="email", state="granted", source="form", ip_address="10.1.1.1"),
            Message(shop_id=shop.id, channel="sms", recipient=PHONE, template="shipping", dedupe_key="m1", customer_id=marta.id),
            Message(shop_id=shop.id, channel="email", recipient=EMAIL, template="cart", dedupe_key="m2"),
            PushSubscription(shop_id=shop.id, customer_id=marta.id, endpoint="https://push.example/abc", p256dh="k", auth="a"),
            Suppression(shop_id=shop.id, channel="email", address=EMAIL, reason="unsubscribed"),
        ])
        shipment = Shipment(shop_id=shop.id, order_id=order.id, courier="inpost", idempotency_key="s1",
                            tracking_numbers=["620000111"], label=f"label for {PHONE}".encode())
        session.add(shipment)
        session.flush()
        session.add(TrackingEvent(shop_id=shop.id, shipment_id=shipment.id, occurred_at=utcnow(), status="delivered",
                                  raw_code="DLV", raw_text="Doręczono", location="Kraków"))
        shop_id = shop.id
    accept_event(runtime, shop_id=shop_id, platform="shopify", topic="customers/update", dedupe_key="w1",
                 headers={}, body=f'{{"email":"{EMAIL}","phone":"{PHONE}"}}'.encode(), ingest_job="test.ingest_nothing")
    return shop_id


def test_export_gathers_every_row_held_about_the_customer(runtime, customer_everywhere):
    with runtime.sessions() as session, shop_context(customer_everywhere):
        export = export_customer_data(session, customer_everywhere, platform_id="9001", email=EMAIL, phone=PHONE)
    assert [c["first_name"] for c in export["customers"]] == ["Marta"]
    assert [o["platform_id"] for o in export["orders"]] == ["A-1"]
    assert len(export["carts"]) == 1 and len(export["consents"]) == 1 and len(export["messages"]) == 2
    assert len(export["push_subscriptions"]) == 1 and len(export["tracking_events"]) == 1
    assert export["shipments"][0]["tracking_numbers"] == ["620000111"] and "label" not in export["shipments"][0]
    assert "jan@example.pl" not in str(export)


def test_redaction_leaves_the_email_and_phone_in_no_table(runtime, customer_everywhere):
    assert set(tables_mentioning(runtime.engine, EMAIL, PHONE)) >= {"customers", "orders", "carts", "messages", "inbound_events"}
    with runtime.sessions.begin() as session, shop_context(customer_everywhere):
        redact_customer(session, customer_everywhere, platform_id="9001", email=EMAIL, phone=PHONE)

    assert tables_mentioning(runtime.engine, EMAIL, PHONE, "Marta") == {}
    with runtime.sessions() as session, shop_context(customer_everywhere):
        assert session.scalars(select(Order.platform_id).order_by(Order.platform_id)).all() == ["A-1", "B-1"]
        assert session.scalars(select(Customer.email)).all() == ["jan@example.pl"]
        assert session.scalars(select(Suppression.address)).all() == [hashed_address(EMAIL)]
        assert session.scalar(select(func.count()).select_from(TrackingEvent)) == 0


def test_erasing_a_shop_removes_every_row_it_owned_and_nothing_else(runtime, customer_everywhere):
    with runtime.sessions.begin() as session:
        other = make_shop(session, "inny.myshopify.com")
        make_customer(session, other, "ktos@example.pl")
    with runtime.sessions.begin() as session:
        assert erase_shop(session, customer_everywhere)
    assert tables_mentioning(runtime.engine, EMAIL, PHONE, "jan@example.pl") == {}
    with runtime.sessions() as session:
        assert session.scalars(select(Shop.domain)).all() == ["inny.myshopify.com"]
        assert session.scalars(select(Customer.email).execution_options(all_shops=True)).all() == ["ktos@example.pl"]
        assert session.scalar(select(func.count()).select_from(InboundEvent).execution_options(all_shops=True)) == 0
