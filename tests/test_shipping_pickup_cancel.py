"""Calling a courier pickup off from the print station (page form and JSON): recorded on the pickup row, asked of
the courier once, refusals in the courier's words; and the migration that holds it."""
from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from sqlalchemy import inspect, select

from app.db import make_engine
from app.migrate import current_revision, downgrade, schema_differences, upgrade
from app.models import CourierPickup, Shop
from app.shipping.accounts import add_account
from app.shipping.warehouse import set_access_code
from app.tenancy import shop_context
from app.shipping.pickups import cancel_pickup
from connectors.couriers import REGISTRY
from tests.fake_couriers import fake_dpd_pl, fake_fan, fake_inpost  # noqa: F401 (fixtures)
from tests.shipping_kit import PL_SENDER, manual_courier_batch, open_pl_shop, open_ro_shop, pl_address, work
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
    assert answer.status_code == 409 and body["error"]["code"] == "courier_refused"
    assert "can no longer be deleted" in body["error"]["message"] and body["pickup"]["status"] == "requested"
    assert row.status == "requested" and "can no longer be deleted" in row.message and row.cancelled_at is None
    assert row.cancelled_by is None


def test_a_rate_limited_courier_is_unavailable_not_a_refusal_and_the_pickup_stands(client, runtime, fake_fan):
    shop_id, csrf, _, asked = requested_fan_pickup(client, runtime, fake_fan)
    fake_fan.fail_next(429, path="/order", headers={"Retry-After": "10"}, times=10)

    answer = cancel(client, shop_id, asked.id, csrf, as_json=True)

    [row] = pickups(runtime, shop_id)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "10"
    assert answer.get_json()["error"]["code"] == "courier_unavailable"
    assert row.status == "requested" and row.message.startswith("not cancelled") and row.cancelled_at is None
    assert not fake_fan.courier_orders[asked.pickup_ref]["cancelled"]
    # staff are waiting: no sleeping out the courier's Retry-After inside the web request
    assert len(fake_fan.requests_to("/order", "DELETE")) == 1


def test_a_refused_login_is_unavailable_on_the_page_and_the_pickup_stands(client, runtime, fake_fan):
    shop_id, csrf, _, asked = requested_fan_pickup(client, runtime, fake_fan)
    fake_fan.fail_next(401, path="/order", times=10)

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
    assert answer.get_json()["error"]["message"] == REGISTRY["manual"].no_pickup_cancel()  # worded in one place


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


# --- a cancel whose answer was lost -------------------------------------------------------------------------------

FAKES = {"fancourier": "fake_fan", "inpost": "fake_inpost", "dpd_pl": "fake_dpd_pl"}
CANCEL_PATHS = {"fancourier": "/order", "inpost": r"/v1/dispatch_orders/\d+", "dpd_pl": "/packages"}


def requested_pickup(client, runtime, name: str, fake) -> tuple[int, str, int, CourierPickup]:
    """(shop id, csrf, batch id, the requested pickup) for a printed batch of one parcel at this courier."""
    opener = {"fancourier": open_ro_shop, "inpost": open_pl_shop, "dpd_pl": open_dpd_pl_shop}[name]
    shop_id, account_id, order_ids = opener(runtime, fake, orders=1)
    csrf, batch_id = printed_batch(client, runtime, shop_id, account_id, order_ids)
    ask(client, shop_id, batch_id, csrf)
    [asked] = pickups(runtime, shop_id)
    assert asked.status == "requested"
    return shop_id, csrf, batch_id, asked


def cancels_sent(name: str, fake) -> int:
    if name == "dpd_pl":
        return sum(b"<operationType>CANCEL</operationType>" in r.body for r in fake.requests_to("/packages"))
    return len(fake.requests_to(CANCEL_PATHS[name], "DELETE"))


def cancelled_at_the_courier(name: str, fake, reference: str) -> bool:
    if name == "fancourier":
        return fake.courier_orders[reference]["cancelled"]
    if name == "inpost":
        return fake.dispatch_orders[int(reference)]["status"] == "canceled"
    return fake.pickup_calls[reference]["cancelled"]


@pytest.mark.parametrize("name", sorted(FAKES))
def test_a_cancel_whose_answer_was_lost_is_recorded_as_unknown_not_refused(client, runtime, request, name):
    fake = request.getfixturevalue(FAKES[name])
    shop_id, csrf, batch_id, asked = requested_pickup(client, runtime, name, fake)
    fake.fail_next(502, path=CANCEL_PATHS[name], after=True)  # the courier cancels it; its answer is lost

    answer = cancel(client, shop_id, asked.id, csrf, as_json=True)
    page = client.get(f"/warehouse/{shop_id}/batches/{batch_id}").get_data(as_text=True)

    [row] = pickups(runtime, shop_id)
    assert cancelled_at_the_courier(name, fake, asked.pickup_ref)
    assert answer.status_code == 502 and answer.get_json()["error"]["code"] == "courier_unavailable"
    assert answer.get_json()["pickup"]["status"] == row.status == "cancel_unknown"
    assert "may have called the pickup off" in row.message and row.cancelled_at is None
    assert cancels_sent(name, fake) == 1  # not replayed into a "not found" that would read as a refusal
    assert "cancel outcome unknown" in page and "may have called the pickup off" in page
    assert "Ask the courier again" in page and "settle-pickup" in page


@pytest.mark.parametrize("name", ["fancourier", "inpost"])
def test_asking_again_after_a_lost_answer_finds_the_order_gone_and_records_it_cancelled(client, runtime, request,
                                                                                       name):
    fake = request.getfixturevalue(FAKES[name])
    shop_id, csrf, batch_id, asked = requested_pickup(client, runtime, name, fake)
    fake.fail_next(502, path=CANCEL_PATHS[name], after=True)
    cancel(client, shop_id, asked.id, csrf, as_json=True)

    again = cancel(client, shop_id, asked.id, csrf, as_json=True)
    ask(client, shop_id, batch_id, csrf, **{"from": "12:00", "until": "16:00"})

    first, second = pickups(runtime, shop_id)
    assert again.status_code == 200 and again.get_json()["pickup"]["status"] == "cancelled"
    assert first.status == "cancelled" and first.cancelled_at is not None and "earlier attempt" in first.message
    assert second.status == "requested" and second.pickup_ref != asked.pickup_ref  # the day is not blocked
    assert cancels_sent(name, fake) == 2


def test_dpd_polska_denying_a_second_cancel_leaves_it_unknown_until_staff_read_the_panel(client, runtime,
                                                                                         fake_dpd_pl):
    shop_id, csrf, batch_id, asked = requested_pickup(client, runtime, "dpd_pl", fake_dpd_pl)
    fake_dpd_pl.fail_next(502, path="/packages", after=True)
    cancel(client, shop_id, asked.id, csrf, as_json=True)

    again = cancel(client, shop_id, asked.id, csrf, as_json=True)
    [unsettled] = pickups(runtime, shop_id)
    settled = client.post(f"/warehouse/{shop_id}/pickups/{asked.id}/settle.json",
                          data={"csrf": csrf, "outcome": "cancelled"})
    ask(client, shop_id, batch_id, csrf, **{"from": "12:00", "until": "16:00"})

    first, second = pickups(runtime, shop_id)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "cancel_unconfirmed"
    assert unsettled.status == "cancel_unknown" and "check the courier's panel" in unsettled.message
    assert unsettled.message.count("ORDER_CANCEL_DENIED") == 1
    assert settled.status_code == 200 and settled.get_json()["pickup"]["status"] == "cancelled"
    assert first.status == "cancelled" and first.cancelled_at is not None and second.status == "requested"


def test_a_pickup_staff_found_still_standing_goes_back_to_requested_and_can_be_cancelled(client, runtime, fake_fan):
    shop_id, csrf, _, asked = requested_fan_pickup(client, runtime, fake_fan)
    fake_fan.fail_next(502, path="/order")  # refused before FAN acted, though the client cannot tell
    cancel(client, shop_id, asked.id, csrf)

    settled = client.post(f"/warehouse/{shop_id}/pickups/{asked.id}/settle", data={"csrf": csrf, "outcome": "standing"})
    [standing] = pickups(runtime, shop_id)
    cancelled = cancel(client, shop_id, asked.id, csrf, as_json=True)

    assert settled.status_code == 303 and standing.status == "requested" and standing.cancelled_at is None
    assert cancelled.status_code == 200 and cancelled.get_json()["pickup"]["status"] == "cancelled"


def test_only_a_cancel_of_unknown_outcome_is_settled_by_hand(client, runtime, fake_fan):
    shop_id, csrf, _, asked = requested_fan_pickup(client, runtime, fake_fan)

    answer = client.post(f"/warehouse/{shop_id}/pickups/{asked.id}/settle.json",
                         data={"csrf": csrf, "outcome": "cancelled"})

    [row] = pickups(runtime, shop_id)
    assert answer.status_code == 409 and answer.get_json()["error"]["code"] == "not_settleable"
    assert row.status == "requested" and fake_fan.requests_to("/order", "DELETE") == []


def test_a_second_lost_answer_keeps_the_cancel_unknown_rather_than_standing(client, runtime, fake_fan):
    shop_id, csrf, _, asked = requested_fan_pickup(client, runtime, fake_fan)
    fake_fan.fail_next(502, path="/order", after=True)
    cancel(client, shop_id, asked.id, csrf, as_json=True)
    fake_fan.fail_next(429, path="/order", headers={"Retry-After": "30"})

    answer = cancel(client, shop_id, asked.id, csrf, as_json=True)

    [row] = pickups(runtime, shop_id)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "30"
    assert row.status == "cancel_unknown" and row.cancelled_at is None  # the first attempt may still have worked


# --- two cancels at once -----------------------------------------------------------------------------------------

def test_a_cancel_that_lost_the_race_does_not_undo_the_winners(client, runtime, fake_fan):
    shop_id, csrf, _, asked = requested_fan_pickup(client, runtime, fake_fan)

    with runtime.sessions(expire_on_commit=False) as second, shop_context(shop_id):
        seen = second.get(CourierPickup, asked.id)
        second.commit()  # both requests read "requested" before either wrote
        won = cancel(client, shop_id, asked.id, csrf, as_json=True)
        lost = cancel_pickup(second, seen, cancelled_by="second")

    [row] = pickups(runtime, shop_id)
    assert won.status_code == 200 and lost.status == row.status == "cancelled"
    assert row.cancelled_by == "warehouse" and row.cancelled_at is not None
    assert len(fake_fan.requests_to("/order", "DELETE")) == 1


def test_two_members_of_staff_cancelling_at_once_ask_the_courier_once(app, client, runtime, fake_fan):
    shop_id, csrf, _, asked = requested_fan_pickup(client, runtime, fake_fan)
    other = app.test_client()
    other_csrf = signed_in(other, shop_id)
    fake_fan.slow_next(1.0, path="/order")  # FAN takes its time over the first DELETE
    answers = {}
    first = threading.Thread(target=lambda: answers.update(first=cancel(client, shop_id, asked.id, csrf, as_json=True)))

    first.start()
    deadline = time.monotonic() + 10
    while not fake_fan.requests_to("/order", "DELETE") and time.monotonic() < deadline:
        time.sleep(0.01)
    second = cancel(other, shop_id, asked.id, other_csrf, as_json=True)
    first.join(20)

    [row] = pickups(runtime, shop_id)
    assert answers["first"].status_code == 200 and answers["first"].get_json()["pickup"]["status"] == "cancelled"
    assert second.status_code == 409 and "being cancelled right now" in second.get_json()["error"]["message"]
    assert row.status == "cancelled" and len(fake_fan.requests_to("/order", "DELETE")) == 1


def test_a_cancel_left_in_flight_by_a_dead_worker_is_taken_over_and_its_effect_recognised(client, runtime, fake_fan):
    from app.models import utcnow

    shop_id, csrf, _, asked = requested_fan_pickup(client, runtime, fake_fan)
    fake_fan.courier_orders[asked.pickup_ref]["cancelled"] = True  # FAN acted; the worker died before recording it
    with runtime.sessions.begin() as session, shop_context(shop_id):
        row = session.get(CourierPickup, asked.id)
        row.status, row.updated_at = "cancelling", utcnow() - dt.timedelta(minutes=10)

    answer = cancel(client, shop_id, asked.id, csrf, as_json=True)

    assert answer.status_code == 200 and answer.get_json()["pickup"]["status"] == "cancelled"
    assert len(fake_fan.requests_to("/order", "DELETE")) == 1


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
