"""Platform records applied to our copy of the shop: newer wins, carts convert, consent changes are kept."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select

from app.models import Cart, Consent, Order, OrderLine
from app.store.apply import apply_cart, apply_customer, apply_order
from app.tenancy import shop_context
from connectors.records import MarketingConsent, Money, StoreCart, StoreCustomer, StoreOrder, StoreOrderLine
from tests.factories import make_shop

T0 = dt.datetime(2026, 11, 20, 10, 0, tzinfo=dt.timezone.utc)


def pln(amount: str) -> Money:
    return Money(Decimal(amount), "PLN")


def order(updated_at: dt.datetime, status: str = "open", total: str = "199.00", **fields) -> StoreOrder:
    return StoreOrder(
        platform_id="5001", number="#1001", status=status, currency="PLN", total=pln(total), subtotal=pln(total),
        shipping_total=pln("0"), tax_total=pln("0"), discount_total=pln("0"), placed_at=T0, updated_at=updated_at,
        email="Zofia@Example.pl", lines=(StoreOrderLine("1", "Kubek", 2, pln("99.50"), pln("199.00")),), **fields)


@pytest.fixture
def shop_id(runtime):
    with runtime.sessions.begin() as session:
        return make_shop(session).id


def _apply(runtime, shop_id, func, record):
    with runtime.sessions.begin() as session, shop_context(shop_id):
        return func(session, shop_id, record) is not None


def test_a_newer_order_version_replaces_the_held_one(runtime, shop_id):
    _apply(runtime, shop_id, apply_order, order(T0))
    assert _apply(runtime, shop_id, apply_order, order(T0 + dt.timedelta(minutes=5), status="cancelled"))
    with runtime.sessions() as session, shop_context(shop_id):
        held = session.scalars(select(Order)).one()
    assert held.status == "cancelled" and held.email == "zofia@example.pl" and held.total == Decimal("199.0000")


def test_a_late_older_delivery_never_overwrites_a_newer_state(runtime, shop_id):
    _apply(runtime, shop_id, apply_order, order(T0 + dt.timedelta(minutes=5), status="cancelled"))
    assert not _apply(runtime, shop_id, apply_order, order(T0, status="open"))
    assert not _apply(runtime, shop_id, apply_order, order(T0 + dt.timedelta(minutes=5), status="open"))
    with runtime.sessions() as session, shop_context(shop_id):
        assert session.scalars(select(Order.status)).one() == "cancelled"


def test_applying_an_order_twice_keeps_one_set_of_lines(runtime, shop_id):
    _apply(runtime, shop_id, apply_order, order(T0))
    _apply(runtime, shop_id, apply_order, order(T0 + dt.timedelta(seconds=1)))
    with runtime.sessions() as session, shop_context(shop_id):
        assert len(session.scalars(select(OrderLine)).all()) == 1


def test_an_order_from_an_abandoned_checkout_marks_the_cart_recovered(runtime, shop_id):
    cart = StoreCart(token="chk-1", currency="PLN", total=pln("199.00"), updated_at=T0, email="zofia@example.pl")
    _apply(runtime, shop_id, apply_cart, cart)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.scalars(select(Cart)).one().abandoned_at = T0 + dt.timedelta(hours=1)
    _apply(runtime, shop_id, apply_order, order(T0 + dt.timedelta(hours=2), checkout_token="chk-1"))
    with runtime.sessions() as session, shop_context(shop_id):
        held = session.scalars(select(Cart)).one()
    assert held.status == "recovered" and held.recovered_order_id is not None


def test_consent_changes_from_the_platform_are_recorded_once_each(runtime, shop_id):
    def customer(updated_at, state):
        consent = MarketingConsent("email", state, state.upper(), "single_opt_in", updated_at, "checkout")
        return StoreCustomer("77", "ana@example.ro", "+40721234567", updated_at=updated_at, consents=(consent,))

    _apply(runtime, shop_id, apply_customer, customer(T0, "granted"))
    _apply(runtime, shop_id, apply_customer, customer(T0 + dt.timedelta(minutes=1), "granted"))
    _apply(runtime, shop_id, apply_customer, customer(T0 + dt.timedelta(minutes=2), "revoked"))
    with runtime.sessions() as session, shop_context(shop_id):
        states = [(c.state, c.source, c.recorded_at) for c in session.scalars(select(Consent).order_by(Consent.id))]
    assert states == [("granted", "platform:checkout", T0), ("revoked", "platform:checkout", T0 + dt.timedelta(minutes=2))]
