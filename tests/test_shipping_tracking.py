"""The tracking poller against the loopback FAN Courier: events stored once, status signals, stop at delivery."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from app.models import CourierAccount, Job, Shipment, ShopAlert, Signal, TrackingEvent, utcnow
from app.shipping.batches import create_batch
from app.shipping.tracking import next_poll_at, schedule_tracking_polls
from app.tenancy import shop_context
from app.shipping.accounts import add_account
from tests.factories import make_order, make_shop
from tests.fake_couriers import BUCHAREST, _bucharest, fake_fan, fake_sameday  # noqa: F401 (fixture)
from tests.shipping_kit import SENDER, open_ro_shop, ro_address, work


@pytest.fixture
def shipped(runtime, fake_fan):
    """(shop id, shipment id, AWB): one order printed with FAN, its label bought."""
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=1)
    with runtime.sessions.begin() as session, shop_context(shop_id):
        create_batch(session, shop_id, order_ids, session.get(CourierAccount, account_id))
    work(runtime)
    with runtime.sessions() as session, shop_context(shop_id):
        shipment = session.scalars(select(Shipment)).one()
    return shop_id, shipment.id, shipment.tracking_numbers[0]


def poll(runtime, hours: float = 1) -> int:
    """The clock's scan as it runs `hours` from now, then the worker."""
    inserted = schedule_tracking_polls(runtime, utcnow() + dt.timedelta(hours=hours))
    work(runtime)
    return inserted


def held(runtime, shop_id: int, model, *where):
    with runtime.sessions() as session, shop_context(shop_id):
        return session.scalars(select(model).where(*where)).all()


def test_a_poll_stores_new_events_once_and_signals_the_status_change(runtime, fake_fan, shipped):
    shop_id, shipment_id, awb = shipped
    fake_fan.add_events(awb, [("C0", "Expediere ridicata", "Bucuresti", _bucharest()),
                              ("H0", "In tranzit", "Bucuresti", _bucharest())])

    poll(runtime)
    poll(runtime, hours=3)

    events = held(runtime, shop_id, TrackingEvent)
    signals = held(runtime, shop_id, Signal, Signal.kind == "shipment_status_changed")
    assert sorted(event.raw_code for event in events) == ["C0", "H0"]
    assert held(runtime, shop_id, Shipment)[0].status == "in_transit"
    assert [(s.payload["shipment_id"], s.payload["status"]) for s in signals] == [(shipment_id, "in_transit")]


def test_polling_stops_once_the_parcel_is_delivered(runtime, fake_fan, shipped):
    shop_id, shipment_id, awb = shipped
    fake_fan.add_events(awb, [("C0", "Expediere ridicata", "Bucuresti", _bucharest()),
                              ("S2", "Livrat", "Iasi", _bucharest())])

    poll(runtime)
    again = poll(runtime, hours=48)

    shipment = held(runtime, shop_id, Shipment)[0]
    assert (shipment.status, shipment.next_poll_at, again) == ("delivered", None, 0)
    assert shipment.delivered_at is not None
    assert len(held(runtime, shop_id, Job, Job.kind == "shipping.track")) == 1


def test_a_parcel_going_back_raises_the_return_signal(runtime, fake_fan, shipped):
    shop_id, shipment_id, awb = shipped
    fake_fan.add_events(awb, [("S16", "Retur la expeditor", "Iasi", _bucharest())])

    poll(runtime)

    returns = held(runtime, shop_id, Signal, Signal.kind == "return_requested")
    assert [(s.payload["shipment_id"], s.payload["status"]) for s in returns] == [(shipment_id, "returning")]


def test_a_parcel_without_news_for_five_days_raises_one_stuck_alert(runtime, fake_fan, shipped):
    shop_id, shipment_id, awb = shipped
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.get(Shipment, shipment_id).created_at = utcnow() - dt.timedelta(days=6)

    poll(runtime, hours=7)
    poll(runtime, hours=14)

    alerts = held(runtime, shop_id, ShopAlert, ShopAlert.kind == "parcel_stuck")
    assert [alert.details["shipment_id"] for alert in alerts] == [shipment_id]


def test_polls_come_less_often_as_a_parcel_ages():
    now = utcnow()
    waits = [next_poll_at(now - age, "in_transit", now) - now
             for age in (dt.timedelta(hours=1), dt.timedelta(days=3), dt.timedelta(days=10), dt.timedelta(days=30))]
    assert waits == sorted(waits) and waits[0] < waits[-1]
    assert next_poll_at(now - dt.timedelta(days=90), "in_transit", now) is None


def test_a_courier_with_a_change_feed_is_read_through_it(runtime, fake_sameday):
    fake_sameday.issued_at = (dt.datetime.now(BUCHAREST) - dt.timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S%z")
    with runtime.sessions.begin() as session:
        shop = make_shop(session, platform="woocommerce", currency="RON")
        account = add_account(session, shop.id, courier="sameday", name="Sameday", sender=SENDER, credentials={
            "username": fake_sameday.username, "password": fake_sameday.password, "pickup_point_id": 1,
            "service_id": 7, "base_url": fake_sameday.url})
        order = make_order(session, shop, currency="RON", number="#1", financial_status="paid",
                           shipping_address=ro_address(1))
        shop_id = shop.id
        with shop_context(shop_id):
            create_batch(session, shop_id, [order.id], account)
    work(runtime)
    awb = next(iter(fake_sameday.awbs))
    a_minute_ago = dt.datetime.now(BUCHAREST) - dt.timedelta(minutes=1)
    fake_sameday.add_status(awb, 4, "Expeditie ridicata", a_minute_ago.strftime("%Y-%m-%dT%H:%M:%S%z"))

    poll(runtime)

    assert held(runtime, shop_id, Shipment)[0].status == "picked_up"
    assert fake_sameday.requests_to("/api/client/status-sync") and not fake_sameday.requests_to(r"/api/client/awb/.*")
