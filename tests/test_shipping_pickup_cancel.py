"""Calling a courier pickup off from the print station (page form and JSON): recorded on the pickup row, asked of
the courier once, refusals in the courier's words; and the migration that holds it."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect, select

from app.db import make_engine
from app.migrate import current_revision, downgrade, schema_differences, upgrade
from app.models import CourierPickup, Shop
from app.shipping.accounts import add_account
from app.shipping.warehouse import set_access_code
from app.tenancy import shop_context
from tests.fake_couriers import fake_dpd_pl, fake_fan  # noqa: F401 (fixtures)
from tests.shipping_kit import PL_SENDER, manual_courier_batch, open_ro_shop, pl_address, work
from tests.test_shipping_pickups import ask, pickups, printed_batch
from tests.test_shipping_warehouse import CODE, signed_in


@pytest.fixture
def runtime(app):
    return app.extensions["companion"]


def cancel(client, shop_id: int, pickup_id: int, csrf: str, *, as_json: bool = False):
    suffix = ".json" if as_json else ""
    return client.post(f"/warehouse/{shop_id}/pickups/{pickup_id}/cancel{suffix}", data={"csrf": csrf})


def requested_fan_pickup(client, runtime, fake_fan, orders: int = 2) -> tuple[int, str, int, CourierPickup]:
    """(shop id, csrf, batch id, the requested pickup) for a printed FAN Courier batch."""
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=orders)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)
    ask(client, shop_id, batch_id, csrf)
    [asked] = pickups(runtime, shop_id)
    assert asked.status == "requested"
    return shop_id, csrf, batch_id, asked


def test_staff_cancel_a_requested_pickup_and_the_row_records_when_and_by_whom(client, runtime, fake_fan):
    shop_id, csrf, batch_id, asked = requested_fan_pickup(client, runtime, fake_fan)

    answer = cancel(client, shop_id, asked.id, csrf)
    page = client.get(f"/warehouse/{shop_id}/batches/{batch_id}").get_data(as_text=True)

    [row] = pickups(runtime, shop_id)
    assert answer.status_code == 303 and answer.headers["Location"].endswith(f"/batches/{batch_id}#pickup")
    assert row.status == "cancelled" and row.cancelled_by == "warehouse" and row.cancelled_at is not None
    assert fake_fan.courier_orders[asked.pickup_ref]["cancelled"]
    assert "cancelled" in page and "cancel-pickup" not in page


def test_cancelling_twice_asks_the_courier_once(client, runtime, fake_fan):
    shop_id, csrf, _, asked = requested_fan_pickup(client, runtime, fake_fan)

    first = cancel(client, shop_id, asked.id, csrf, as_json=True)
    second = cancel(client, shop_id, asked.id, csrf, as_json=True)

    assert first.status_code == second.status_code == 200
    assert first.get_json()["pickup"]["status"] == second.get_json()["pickup"]["status"] == "cancelled"
    assert second.get_json()["pickup"]["cancelled_at"] == first.get_json()["pickup"]["cancelled_at"]
    assert len(fake_fan.requests_to("/order", "DELETE")) == 1


def test_a_refused_cancel_keeps_the_pickup_and_answers_the_couriers_reason_as_json(client, runtime, fake_fan):
    shop_id, csrf, _, asked = requested_fan_pickup(client, runtime, fake_fan)
    fake_fan.courier_orders[asked.pickup_ref]["collected"] = True

    answer = cancel(client, shop_id, asked.id, csrf, as_json=True)

    [row] = pickups(runtime, shop_id)
    body = answer.get_json()
    assert answer.status_code == 502 and body["error"]["code"] == "courier_refused"
    assert "can no longer be deleted" in body["error"]["message"] and body["pickup"]["status"] == "requested"
    assert row.status == "requested" and "can no longer be deleted" in row.message and row.cancelled_at is None


def test_a_courier_that_cannot_be_reached_leaves_the_pickup_standing(client, runtime, fake_fan):
    shop_id, csrf, _, asked = requested_fan_pickup(client, runtime, fake_fan)
    fake_fan.fail_next(503, path="/order", times=10)

    answer = cancel(client, shop_id, asked.id, csrf)

    [row] = pickups(runtime, shop_id)
    assert answer.status_code == 502 and "did not cancel" in answer.get_data(as_text=True)
    assert row.status == "requested" and row.message.startswith("not cancelled")
    assert not fake_fan.courier_orders[asked.pickup_ref]["cancelled"]


def test_a_pickup_asked_again_after_a_cancel_is_a_new_request_and_the_cancelled_one_stays(client, runtime, fake_fan):
    shop_id, csrf, batch_id, asked = requested_fan_pickup(client, runtime, fake_fan)
    cancel(client, shop_id, asked.id, csrf)

    ask(client, shop_id, batch_id, csrf, **{"from": "12:00", "until": "16:00"})

    first, second = pickups(runtime, shop_id)
    assert (first.status, second.status) == ("cancelled", "requested")
    assert first.pickup_ref == asked.pickup_ref and second.pickup_ref != asked.pickup_ref
    assert len(fake_fan.courier_orders) == 2


def manual_pickup(runtime, status: str) -> tuple[int, int]:
    """(shop id, pickup id): a pickup row in `status` on a batch of the manual courier."""
    with runtime.sessions.begin() as session:
        shop, account, batch = manual_courier_batch(session, CODE)
        pickup = CourierPickup(shop_id=shop.id, courier_account_id=account.id, label_batch_id=batch.id,
                               courier="manual", dedupe_key="x", day=dt.date(2030, 6, 14), ready_from="10:00",
                               ready_until="14:00", parcels=1, status=status, pickup_ref="42")
        session.add(pickup)
        session.flush()
        return shop.id, pickup.id


def test_a_courier_without_a_cancel_call_answers_409_in_json(client, runtime):
    shop_id, pickup_id = manual_pickup(runtime, "requested")
    csrf = signed_in(client, shop_id)

    answer = cancel(client, shop_id, pickup_id, csrf, as_json=True)

    assert answer.status_code == 409 and answer.get_json()["error"]["code"] == "not_cancellable"
    assert "call the courier" in answer.get_json()["error"]["message"]


def test_a_request_whose_outcome_is_unknown_is_not_cancelled_through_the_api(client, runtime, fake_fan):
    shop_id, account_id, order_ids = open_ro_shop(runtime, fake_fan, orders=1)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)
    fake_fan.fail_next(502, path="/order", after=True)
    ask(client, shop_id, batch_id, csrf)
    [asked] = pickups(runtime, shop_id)

    answer = cancel(client, shop_id, asked.id, csrf, as_json=True)

    assert asked.status == "unknown" and answer.status_code == 409
    assert "check its panel" in answer.get_json()["error"]["message"]
    assert fake_fan.requests_to("/order", "DELETE") == []


def test_the_cancel_api_takes_the_csrf_header_and_answers_json_when_json_is_asked_for(client, runtime, fake_fan):
    shop_id, csrf, _, asked = requested_fan_pickup(client, runtime, fake_fan)

    answer = client.post(f"/warehouse/{shop_id}/pickups/{asked.id}/cancel",
                         headers={"X-CSRF-Token": csrf, "Accept": "application/json"})

    assert answer.status_code == 200 and answer.get_json()["pickup"]["status"] == "cancelled"


def test_an_unknown_pickup_is_a_404_in_json(client, runtime, fake_fan):
    shop_id, _, _ = open_ro_shop(runtime, fake_fan)
    with runtime.sessions.begin() as session:
        set_access_code(session.get(Shop, shop_id), CODE)
    csrf = signed_in(client, shop_id)

    answer = cancel(client, shop_id, 999999, csrf, as_json=True)

    assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "not_found"


def test_the_batch_lists_its_pickups_as_json(client, runtime, fake_fan):
    shop_id, csrf, batch_id, asked = requested_fan_pickup(client, runtime, fake_fan)

    listed = client.get(f"/warehouse/{shop_id}/batches/{batch_id}/pickups.json").get_json()["pickups"]

    assert [(p["id"], p["status"], p["pickup_ref"]) for p in listed] == [(asked.id, "requested", asked.pickup_ref)]


# --- DPD Polska: the checksum given with the order is what cancels it ---------------------------------------------

def open_dpd_pl_shop(runtime, fake, *, orders: int) -> tuple[int, int, list[int]]:
    from app.models import utcnow
    from tests.factories import make_customer, make_order, make_shop

    credentials = {"login": fake.login, "password": fake.password, "master_fid": fake.master_fid,
                   "base_url": f"{fake.url}/packages", "info_url": f"{fake.url}/events"}
    with runtime.sessions.begin() as session:
        shop = make_shop(session, platform="woocommerce", currency="PLN", timezone="Europe/Warsaw", locale="pl")
        account = add_account(session, shop.id, courier="dpd_pl", name="DPD", credentials=credentials,
                              sender=PL_SENDER, shipping_methods=["DPD Kurier"], parcel={"weight_kg": "2"})
        customer = make_customer(session, shop, "zofia@example.pl")
        order_ids = [make_order(session, shop, customer, total="249.90", currency="PLN", number=f"#{3000 + n}",
                                financial_status="paid", paid_at=utcnow() - dt.timedelta(hours=2),
                                placed_at=utcnow() - dt.timedelta(hours=3), shipping_method="DPD Kurier",
                                shipping_address=pl_address(n)).id for n in range(orders)]
        return shop.id, account.id, order_ids


def test_dpd_polska_pickup_is_cancelled_with_the_checksum_kept_from_its_request(client, runtime, fake_dpd_pl):
    shop_id, account_id, order_ids = open_dpd_pl_shop(runtime, fake_dpd_pl, orders=2)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)
    ask(client, shop_id, batch_id, csrf)
    [asked] = pickups(runtime, shop_id)

    answer = cancel(client, shop_id, asked.id, csrf, as_json=True)

    call = fake_dpd_pl.pickup_calls[asked.pickup_ref]
    assert asked.status == "requested" and asked.courier_data == {"checkSum": call["checkSum"]}
    assert answer.status_code == 200 and answer.get_json()["pickup"]["status"] == "cancelled" and call["cancelled"]


# --- the migration ------------------------------------------------------------------------------------------------

def test_migration_0014_adds_the_cancel_columns_and_documents_table_and_takes_them_away(database_url):
    engine = make_engine(database_url)
    try:
        downgrade(engine, "0013")
        columns = {c["name"] for c in inspect(engine).get_columns("courier_pickups")}
        assert current_revision(engine) == "0013" and "courier_documents" not in inspect(engine).get_table_names()
        assert not {"courier_data", "cancelled_at", "cancelled_by"} & columns

        upgrade(engine)
        columns = {c["name"] for c in inspect(engine).get_columns("courier_pickups")}
        assert {"courier_data", "cancelled_at", "cancelled_by"} <= columns
        assert "courier_documents" in inspect(engine).get_table_names() and schema_differences(engine) == []
    finally:
        engine.dispose()
