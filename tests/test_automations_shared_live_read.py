"""Thousands of carts abandoned at once: the live store is read once per batch of reminders, not once per cart,
and a customer who bought meanwhile (the order only in the store, its webhook lost) still gets no reminder."""
from __future__ import annotations

import datetime as dt
import math

import pytest
from sqlalchemy import func, insert, select, text

from app.automations.truth import WINDOW_PAGES, _WINDOW_ORDERS_PAGE
from app.models import AutomationDecision, CartLine, Consent, Customer, Order
from app.tenancy import shop_context
from tests.automations_kit import (API_KEY, SECRET, T0, Cart, FlowRun, Message, clock_tick,  # noqa: F401
                                   enable_library_flow, fake, runtime, shop_id, travel)
from tests.messaging_fakes import SmtpSink
from tests.outbox_helpers import provider_env

SECOND, MIN, HOUR = dt.timedelta(seconds=1), dt.timedelta(minutes=1), dt.timedelta(hours=1)
CARTS = 2_000
RUNS_PER_JOB = 200  # engine.BATCH: due runs per automations.run_step job


def iso(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def email(i: int) -> str:
    return f"k{i}@example.pl"


def phone(i: int) -> str:
    return f"+4869{i:07d}"


@pytest.fixture
def sink():
    with SmtpSink() as running:
        yield running


@pytest.fixture
def shopify_app(make_settings, fake, sink):
    """The kit's app, with mail going to a real SMTP sink: reminders really leave."""
    from app import create_app

    app = create_app(make_settings(SHOPIFY_API_KEY=API_KEY, SHOPIFY_API_SECRET=SECRET, SHOPIFY_ADMIN_BASE_URL=fake.url,
                                   MESSAGES_PER_SHOP_PER_MINUTE="100000", **provider_env(sink)))
    yield app
    app.extensions["companion"].close()


def abandon_carts_at_once(runtime, shop_id: int, count: int) -> dict[str, int]:
    """`count` known customers who agreed to email, each with a one-line cart last touched at T0; cart ids by token."""
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.execute(insert(Customer.__table__), [
            dict(shop_id=shop_id, email=email(i), phone=phone(i), locale="pl", created_at=T0 - 400 * HOUR)
            for i in range(count)])
        customers = dict(session.execute(select(Customer.email, Customer.id)).all())
        session.execute(insert(Consent.__table__), [
            dict(shop_id=shop_id, customer_id=customers[email(i)], channel="email", state="granted", source="checkout",
                 recorded_at=T0 - 300 * HOUR) for i in range(count)])
        session.execute(insert(Cart.__table__), [
            dict(shop_id=shop_id, platform_token=f"bulk-{i}", customer_id=customers[email(i)], email=email(i),
                 phone=phone(i), currency="PLN", total=100, status="active", last_activity_at=T0, created_at=T0,
                 recovery_url=f"https://kwiaciarnia-roza.pl/checkouts/bulk-{i}/recover") for i in range(count)])
        cart_ids = dict(session.execute(select(Cart.platform_token, Cart.id)).all())
        session.execute(insert(CartLine.__table__), [
            dict(shop_id=shop_id, cart_id=cart_ids[f"bulk-{i}"], name="Bukiet róż", quantity=1, unit_price=100)
            for i in range(count)])
    if runtime.engine.dialect.name == "postgresql":  # statistics autovacuum keeps for a live shop's tables
        with runtime.engine.begin() as conn:
            conn.execute(text("ANALYZE customers, consents, carts, cart_lines"))
    return cart_ids


def test_thousands_of_reminders_read_the_store_once_per_batch_and_skip_carts_bought_without_a_webhook(
        runtime, shop_id, fake, sink, travel):
    by_email = {i for i in range(CARTS) if i % 10 in (3, 6)}  # ordered in the shop; the order webhook never came
    by_phone = {i for i in range(CARTS) if i % 50 == 7}  # ordered by phone, with another email
    by_checkout = {i for i in range(CARTS) if i % 100 == 11}  # the checkout itself completed; no order seen yet
    before_cart = {i for i in range(CARTS) if i % 100 == 21}  # an order from before the cart: still a reminder
    bought = by_email | by_phone | by_checkout
    enable_library_flow(runtime, shop_id, "abandoned_cart")
    travel(T0)
    abandon_carts_at_once(runtime, shop_id, CARTS)
    for i in sorted(by_email):
        fake.add_order(7_000_000 + i, email=email(i), phone=None, updated_at=iso(T0 + 20 * MIN + i * SECOND))
    for i in sorted(by_phone):
        fake.add_order(8_000_000 + i, email=f"inny{i}@example.pl", phone=phone(i), updated_at=iso(T0 + 40 * MIN))
    for i in sorted(by_checkout):
        fake.add_abandoned_checkout(9_000_000 + i, token=f"bulk-{i}", email=email(i), updated_at=iso(T0 + 45 * MIN),
                                    completed_at=iso(T0 + 45 * MIN))
    for i in sorted(before_cart):
        fake.add_order(6_000_000 + i, email=email(i), updated_at=iso(T0 - 5 * HOUR))
    fake.add_order(5_000_000, email="ktos.inny@example.pl", phone=None, updated_at=iso(T0 + 30 * MIN))  # someone else
    fake.requests.clear()

    clock_tick(runtime, travel(T0 + 61 * MIN))

    with runtime.sessions() as session, shop_context(shop_id):
        runs = session.execute(select(FlowRun.id, FlowRun.state, FlowRun.exit_reason, Customer.email)
                               .join(Customer, Customer.id == FlowRun.customer_id)).all()
        messages = session.execute(select(Message.recipient, Message.template, Message.status)).all()
        held = set(session.scalars(select(Order.platform_id)))
        postponed = session.scalar(select(func.count()).select_from(AutomationDecision).where(
            AutomationDecision.decision.like("postponed%")))
    index = {email(i): i for i in range(CARTS)}
    exited = {index[address] for _, state, reason, address in runs if (state, reason) == ("exited", "purchased")}
    assert len(runs) == CARTS, "every cart abandoned: one run each"
    assert exited == bought, "bought meanwhile (order or checkout only in the store): no reminder"
    assert sorted(index[recipient] for recipient, _, _ in messages) == sorted(set(range(CARTS)) - bought)
    assert {(template, status) for _, template, status in messages} == {("abandoned_cart_1", "sent")}
    assert len(sink.handler.received) == CARTS - len(bought), "each reminder reached the SMTP server once"
    assert postponed == 0
    assert {f"{7_000_000 + i}" for i in by_email} | {f"{8_000_000 + i}" for i in by_phone} <= held, \
        "the orders the webhooks missed are now held"

    reads = [r for r in fake.requests if r.operation in ("OrdersUpdatedSince", "AbandonedCheckoutsUpdatedSince")]
    assert all("email:" not in r.variables["query"] for r in reads), "no per-cart search"
    window_orders = len(by_email) + len(by_phone) + 1
    pages_per_read = math.ceil(window_orders / _WINDOW_ORDERS_PAGE) + 1  # orders, then one page of checkouts
    batches = math.ceil(CARTS / RUNS_PER_JOB)
    assert pages_per_read <= WINDOW_PAGES
    assert len(reads) <= batches * pages_per_read, f"{len(reads)} store reads for {CARTS} carts"
    assert len(fake.requests) == len(reads), "nothing else asked of the store"
