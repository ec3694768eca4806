"""Shared arrangements for the automations tests: a Shopify shop on the loopback fake, time travel, the clock's scans."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
import time_machine
from sqlalchemy import select

from app.automations.detection import enqueue_abandoned_cart_checks
from app.automations.engine import enqueue_due_steps, enqueue_signal_routing
from app.automations.flows import install_library_flow
from app.jobs.executors.local import LocalWorker
from app.models import AutomationDecision, Cart, Coupon, FlowRun, Message, Signal, utcnow
from app.store.apply import apply_cart
from app.tenancy import shop_context
from connectors.records import Money, StoreCart, StoreCartLine
from tests.factories import make_shop
from tests.fake_shopify import FakeShopify

API_KEY, SECRET = "companion-client-id", "shpss_current_secret"
SHOP = "kwiaciarnia-roza.myshopify.com"
EMAIL, PHONE = "zofia.nowak@example.pl", "+48600111222"
T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def fake():
    with FakeShopify(client_id=API_KEY, client_secret=SECRET) as server:
        yield server


@pytest.fixture
def shopify_app(make_settings, fake):
    from app import create_app

    app = create_app(make_settings(SHOPIFY_API_KEY=API_KEY, SHOPIFY_API_SECRET=SECRET,
                                   PUBLIC_URL="https://companion.example.com", SHOPIFY_ADMIN_BASE_URL=fake.url))
    yield app
    app.extensions["companion"].close()


@pytest.fixture
def runtime(shopify_app):
    return shopify_app.extensions["companion"]


@pytest.fixture
def shop_id(runtime):
    with runtime.sessions.begin() as session:
        return make_shop(session, SHOP, credentials={"access_token": "shpat_fake_token"}, timezone="Europe/Warsaw",
                         locale="pl", currency="PLN").id


@pytest.fixture
def travel():
    """travel(moment): move this process's clock to `moment` (it keeps ticking from there)."""
    traveller = None

    def go(moment: dt.datetime) -> dt.datetime:
        nonlocal traveller
        if traveller is not None:
            traveller.stop()
        traveller = time_machine.travel(moment, tick=True)
        traveller.start()
        return moment

    yield go
    if traveller is not None:
        traveller.stop()


def enable_library_flow(runtime, shop_id: int, key: str) -> int:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        return install_library_flow(session, shop_id, key, enabled=True).id


def put_cart(runtime, shop_id: int, token: str = "tok-1", *, at: dt.datetime, email: str | None = EMAIL,
             phone: str | None = PHONE, total: str = "229.90", lines: int = 1) -> int:
    """A cart as the platform reports it, through the ingest path every platform uses."""
    record = StoreCart(token=token, currency="PLN", total=Money(Decimal(total), "PLN"), updated_at=at, email=email,
                       phone=phone, recovery_url=f"https://kwiaciarnia-roza.pl/checkouts/{token}/recover",
                       lines=tuple(StoreCartLine(name="Bukiet róż", quantity=1, unit_price=Money(Decimal(total), "PLN"))
                                   for _ in range(lines)))
    with runtime.sessions.begin() as session, shop_context(shop_id):
        return apply_cart(session, shop_id, record).id


def work(runtime) -> None:
    LocalWorker(runtime).run(exit_when_idle=True)


def route(runtime, times: int = 1) -> None:
    """What the clock's signal-routing scan does, `times` ticks in a row, each followed by the workers."""
    for _ in range(times):
        with runtime.sessions.begin() as session:
            enqueue_signal_routing(session, utcnow())
        work(runtime)


def clock_tick(runtime, now: dt.datetime) -> None:
    """What the clock's automation scans would do at `now`, each followed by the workers."""
    for scan in (enqueue_abandoned_cart_checks, enqueue_signal_routing, enqueue_due_steps):
        with runtime.sessions.begin() as session:
            scan(session, now)
        work(runtime)


def rows(runtime, shop_id: int, model, *where, order_by=None):
    with runtime.sessions() as session, shop_context(shop_id):
        return session.scalars(select(model).where(*where).order_by(order_by if order_by is not None else model.id)).all()


def templates_sent(runtime, shop_id: int) -> list[str]:
    return [m.template for m in rows(runtime, shop_id, Message)]


def decisions(runtime, shop_id: int) -> list[str]:
    return [d.decision for d in rows(runtime, shop_id, AutomationDecision)]


__all__ = ["API_KEY", "SECRET", "SHOP", "EMAIL", "PHONE", "T0", "fake", "shopify_app", "runtime", "shop_id", "travel",
           "enable_library_flow", "put_cart", "work", "route", "clock_tick", "rows", "templates_sent", "decisions",
           "Cart", "Coupon", "FlowRun", "Message", "Signal", "AutomationDecision"]
