"""Requesting a courier pickup from the print station: one van per batch and day, the courier's number shown."""
from __future__ import annotations

import html

import pytest
from sqlalchemy import select

from app.models import CourierPickup, LabelBatch, Shipment, Shop
from app.shipping.warehouse import set_access_code
from app.tenancy import shop_context
from connectors.couriers import REGISTRY
from tests.fake_couriers import fake_fan, fake_inpost  # noqa: F401 (fixtures)
from tests.shipping_kit import manual_courier_batch, open_pl_shop, open_ro_shop, work
from tests.test_shipping_warehouse import CODE, signed_in

TOMORROW = "2030-06-14"


@pytest.fixture
def runtime(app):
    return app.extensions["companion"]


def printed_batch(client, runtime, shop_id: int, account_id: int, order_ids: list[int]) -> tuple[str, int]:
    """(csrf token, batch id) after staff printed these orders."""
    with runtime.sessions.begin() as session:
        set_access_code(session.get(Shop, shop_id), CODE)
    csrf = signed_in(client, shop_id)
    client.post(f"/warehouse/{shop_id}/batches", data={"csrf": csrf, "order_ids": order_ids, "account_id": account_id})
    work(runtime)
    with runtime.sessions() as session, shop_context(shop_id):
        return csrf, session.scalars(select(LabelBatch.id)).one()


def ask(client, shop_id: int, batch_id: int, csrf: str, **form):
    data = {"csrf": csrf, "day": TOMORROW, "from": "10:00", "until": "14:00", **form}
    return client.post(f"/warehouse/{shop_id}/batches/{batch_id}/pickup", data=data)


def pickups(runtime, shop_id: int) -> list[CourierPickup]:
    with runtime.sessions() as session, shop_context(shop_id):
        return list(session.scalars(select(CourierPickup).order_by(CourierPickup.id)))


def test_staff_request_a_pickup_for_a_printed_batch_and_see_the_couriers_order_number(client, runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=3)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)

    answer = ask(client, shop_id, batch_id, csrf, note="Rampa 2")
    page = client.get(answer.headers["Location"].split("#")[0]).get_data(as_text=True)

    [asked] = pickups(runtime, shop_id)
    info = fake_fan.courier_orders[asked.pickup_ref]["info"]
    assert answer.status_code == 303 and asked.status == "requested" and asked.pickup_ref in page
    assert info["pickupDate"] == TOMORROW and info["packages"]["parcel"] == 3 and info["weight"] == 4.5
    assert info["pickupHours"] == {"first": "10:00", "second": "14:00"} and info["observations"] == "Rampa 2"


def test_asking_twice_for_the_same_day_sends_one_van(client, runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=2)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)

    ask(client, shop_id, batch_id, csrf)
    ask(client, shop_id, batch_id, csrf, **{"from": "11:00", "until": "15:00"})

    assert len(fake_fan.courier_orders) == 1 and len(pickups(runtime, shop_id)) == 1


def test_a_refused_pickup_shows_the_couriers_reason_and_may_be_asked_again(client, runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=1)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)

    refused = ask(client, shop_id, batch_id, csrf, **{"from": "15:00", "until": "16:00"})
    accepted = ask(client, shop_id, batch_id, csrf, **{"from": "15:00", "until": "17:00"})

    [asked] = pickups(runtime, shop_id)
    assert refused.status_code == 502 and "at least 2 hours" in refused.get_data(as_text=True)
    assert accepted.status_code == 303 and asked.status == "requested" and asked.ready_until == "17:00"
    assert len(fake_fan.courier_orders) == 1


def test_a_courier_that_went_silent_leaves_the_request_unknown_and_it_is_not_sent_again(client, runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=1)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)
    fake_fan.fail_next(502, path="/order", after=True)  # FAN took the order; its answer was lost

    ask(client, shop_id, batch_id, csrf)
    ask(client, shop_id, batch_id, csrf)

    [asked] = pickups(runtime, shop_id)
    assert asked.status == "unknown" and "courier's panel" in asked.message
    assert len(fake_fan.requests_to("/order", "POST")) == 1


def test_inpost_collects_the_batchs_shipments_by_dispatch_order(client, runtime, fake_inpost):
    shop_id, account_id, order_ids = open_pl_shop(runtime, fake_inpost, orders=2)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)

    ask(client, shop_id, batch_id, csrf)

    [asked] = pickups(runtime, shop_id)
    [order] = fake_inpost.dispatch_orders.values()
    with runtime.sessions() as session, shop_context(shop_id):
        refs = sorted(int(s.shipment_ref) for s in session.scalars(select(Shipment)))
    assert asked.status == "requested" and asked.pickup_ref == str(order["id"])
    assert sorted(s["id"] for s in order["shipments"]) == refs and order["_request"]["office_hours"] == "10:00-14:00"


def test_a_courier_without_pickup_requests_says_so_on_the_batch_page(client, runtime):
    with runtime.sessions.begin() as session:
        shop, _account, batch = manual_courier_batch(session, CODE)
        shop_id, batch_id = shop.id, batch.id
    csrf = signed_in(client, shop_id)

    answer = ask(client, shop_id, batch_id, csrf)

    assert answer.status_code == 409 and "book the collection by phone" in answer.get_data(as_text=True)
    assert REGISTRY["manual"].no_pickup_requests() in html.unescape(answer.get_data(as_text=True))  # worded once
    assert pickups(runtime, shop_id) == []


def test_the_handover_list_carries_the_pickup_order_number_for_the_driver(client, runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=2)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)
    ask(client, shop_id, batch_id, csrf)

    handover = client.get(f"/warehouse/{shop_id}/batches/{batch_id}/handover").get_data(as_text=True)

    assert f"Pickup order no. {pickups(runtime, shop_id)[0].pickup_ref}" in handover
