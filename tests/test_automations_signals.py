"""Ingest records signals where state changes, once each, with no personal data, and not for old history."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.automations.signals import PersonalDataInSignal, emit_signal
from app.models import Signal, utcnow
from app.store.apply import apply_order, apply_refund
from app.tenancy import shop_context
from connectors.records import Money, StoreOrder, StoreRefund
from tests.factories import make_shop

EMAIL = "ana.popescu@example.ro"


def order(platform_id: str, at: dt.datetime, *, paid: bool = False, cancelled: bool = False) -> StoreOrder:
    money = Money(Decimal("120.00"), "RON")
    zero = Money(Decimal("0"), "RON")
    return StoreOrder(platform_id=platform_id, number="#1", status="processing", currency="RON", total=money,
                      subtotal=money, shipping_total=zero, tax_total=zero, discount_total=zero, placed_at=at,
                      updated_at=at, email=EMAIL, phone="+40722111222", financial_status="paid" if paid else "pending",
                      paid_at=at if paid else None, cancelled_at=at if cancelled else None)


@pytest.fixture
def shop_id(runtime):
    with runtime.sessions.begin() as session:
        return make_shop(session, currency="RON", locale="ro", timezone="Europe/Bucharest").id


def kinds(runtime, shop_id):
    with runtime.sessions() as session, shop_context(shop_id):
        return [s.kind for s in session.scalars(select(Signal).order_by(Signal.id))]


def apply(runtime, shop_id, func, record):
    with runtime.sessions.begin() as session, shop_context(shop_id):
        func(session, shop_id, record)


def test_a_new_order_then_its_payment_then_its_cancellation_each_signal_once(runtime, shop_id):
    now = utcnow()
    apply(runtime, shop_id, apply_order, order("1", now))
    apply(runtime, shop_id, apply_order, order("1", now + dt.timedelta(minutes=5), paid=True))
    apply(runtime, shop_id, apply_order, order("1", now + dt.timedelta(minutes=6), paid=True))
    apply(runtime, shop_id, apply_order, order("1", now + dt.timedelta(minutes=9), paid=True, cancelled=True))
    assert kinds(runtime, shop_id) == ["order_placed", "order_paid", "order_cancelled"]


def test_a_duplicate_or_stale_delivery_signals_nothing_new(runtime, shop_id):
    now = utcnow()
    apply(runtime, shop_id, apply_order, order("2", now, paid=True))
    apply(runtime, shop_id, apply_order, order("2", now, paid=True))
    assert kinds(runtime, shop_id) == ["order_placed", "order_paid"]


def test_a_refund_signals_with_the_amount_and_no_personal_data(runtime, shop_id):
    now = utcnow()
    apply(runtime, shop_id, apply_order, order("3", now, paid=True))
    apply(runtime, shop_id, apply_refund, StoreRefund("r-1", "3", Money(Decimal("120.00"), "RON"), now))
    with runtime.sessions() as session, shop_context(shop_id):
        refund = session.scalars(select(Signal).where(Signal.kind == "refund_created")).one()
        texts = " ".join(str(s.payload) for s in session.scalars(select(Signal)))
    assert refund.payload["amount"] == "120.00" and refund.payload["financial_status"] == "refunded"
    assert EMAIL not in texts and "+40722111222" not in texts


def test_orders_from_an_old_import_are_history_and_signal_nothing(runtime, shop_id):
    apply(runtime, shop_id, apply_order, order("4", utcnow() - dt.timedelta(days=400), paid=True))
    assert kinds(runtime, shop_id) == []


def test_a_payload_with_an_email_is_refused(runtime, shop_id):
    with runtime.sessions.begin() as session, shop_context(shop_id):
        with pytest.raises(PersonalDataInSignal):
            emit_signal(session, shop_id, "custom_event", dedupe_key="x", payload={"email": EMAIL})
