"""Courier pickup requests and their cancellation, to each courier's documented call, against the loopback fakes;
the couriers without such a call say so."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

import xml.etree.ElementTree as ET

from connectors.couriers import (
    REGISTRY, Capability, Cargus, CourierRefused, DpdPolska, DpdRomania, FanCourier, InPost, PickupCancelDenied,
    PickupRequest, PickupResult, TokenCache, Unsupported, make,
)
from connectors.errors import AmbiguousOutcome, NotFound
from connectors.records import Address
from tests.fake_couriers import (  # noqa: F401 (fixtures)
    Sleeps, fake_cargus, fake_dpd_pl, fake_dpd_ro, fake_fan, fake_inpost, pl_request, ro_request,
)

TOMORROW = dt.date.today() + dt.timedelta(days=1)
WAREHOUSE_RO = Address(name="Magazin Floare SRL", street="Str. Lunga 10", city="Bucuresti", postcode="010011",
                       region="Bucuresti", country="RO", phone="+40723000000")
WAREHOUSE_PL = Address(name="Kwiaciarnia Róża", street="ul. Floriańska 3", city="Kraków", postcode="31-019",
                       country="PL", phone="+48600111222", email="magazyn@example.pl")


def pickup(address: Address = WAREHOUSE_RO, **changes) -> PickupRequest:
    fields = dict(address=address, day=TOMORROW, ready_from=dt.time(10), ready_until=dt.time(14), parcels=12,
                  weight_kg=Decimal("18.5"), note="Rampa 2")
    fields.update(changes)
    return PickupRequest(**fields)


def test_only_couriers_with_a_documented_pickup_call_declare_it():
    assert sorted(name for name, cls in REGISTRY.items() if cls.can(Capability.PICKUP_REQUEST)) == \
        ["cargus", "dpd_pl", "dpd_ro", "fancourier", "inpost"]


def test_only_couriers_with_a_documented_cancel_call_declare_pickup_cancel():
    assert sorted(name for name, cls in REGISTRY.items() if cls.can(Capability.PICKUP_CANCEL)) == \
        ["dpd_pl", "fancourier", "inpost"]


@pytest.mark.parametrize("name", ["sameday", "manual"])
def test_couriers_without_it_say_so_and_call_nothing(name):
    courier = REGISTRY[name]

    assert not courier.can(Capability.PICKUP_REQUEST)
    with pytest.raises(Unsupported, match="courier's own panel"):
        courier.request_pickup(object.__new__(courier), pickup())


def test_sameday_says_it_sends_a_courier_for_every_awb_by_itself():
    with pytest.raises(Unsupported, match="Comanda curier primita"):
        REGISTRY["sameday"].request_pickup(object.__new__(REGISTRY["sameday"]), pickup())


def test_fan_courier_gets_a_standard_courier_order_for_the_day_and_window(fake_fan):
    courier = FanCourier(fake_fan.client_id, fake_fan.username, fake_fan.password, base_url=fake_fan.url,
                         tokens=TokenCache())

    result = courier.request_pickup(pickup())

    info = fake_fan.requests_to("/order", "POST")[0].body["info"]
    assert result.courier == "fancourier" and result.pickup_id in fake_fan.courier_orders
    assert info["orderType"] == "Standard" and info["pickupDate"] == TOMORROW.isoformat()
    assert info["pickupHours"] == {"first": "10:00", "second": "14:00"}
    assert info["packages"] == {"parcel": 12, "envelope": 0} and info["weight"] == 18.5
    assert info["observations"] == "Rampa 2"


def test_fan_courier_refuses_a_window_shorter_than_two_hours_in_its_own_words(fake_fan):
    courier = FanCourier(fake_fan.client_id, fake_fan.username, fake_fan.password, base_url=fake_fan.url,
                         tokens=TokenCache())

    with pytest.raises(CourierRefused) as refused:
        courier.request_pickup(pickup(ready_from=dt.time(15), ready_until=dt.time(16)))

    assert refused.value.errors == {"info.pickupHours": ["There must be at least 2 hours between the pickup hours."]}
    assert fake_fan.courier_orders == {}


def test_a_window_that_ends_before_it_starts_is_refused_before_any_call(fake_fan):
    courier = FanCourier(fake_fan.client_id, fake_fan.username, fake_fan.password, base_url=fake_fan.url,
                         tokens=TokenCache())

    with pytest.raises(ValueError):
        courier.request_pickup(pickup(ready_from=dt.time(14), ready_until=dt.time(10)))
    assert fake_fan.requests == []


def test_inpost_gets_a_dispatch_order_naming_the_shipments_and_the_address(fake_inpost):
    courier = InPost(fake_inpost.api_token, fake_inpost.organization_id, base_url=fake_inpost.url, sleep=Sleeps(),
                     tokens=TokenCache())
    shipments = [courier.create_shipment(pl_request(f"ZAM-{n}")).shipment_id for n in range(2)]

    result = courier.request_pickup(pickup(WAREHOUSE_PL, shipments=tuple(shipments)))

    sent = fake_inpost.requests_to(r"/v1/organizations/\d+/dispatch_orders", "POST")[0].body
    assert result.pickup_id in {str(key) for key in fake_inpost.dispatch_orders}
    assert sent["shipments"] == [int(s) for s in shipments] and sent["office_hours"] == "10:00-14:00"
    assert sent["address"] == {"street": "ul. Floriańska", "building_number": "3", "city": "Kraków",
                               "post_code": "31-019", "country_code": "PL"}
    assert sent["phone"] == "600111222" and sent["name"] == "Kwiaciarnia Róża" and sent["comment"] == "Rampa 2"


def test_inpost_needs_the_shipments_to_collect(fake_inpost):
    courier = InPost(fake_inpost.api_token, fake_inpost.organization_id, base_url=fake_inpost.url,
                     tokens=TokenCache())

    with pytest.raises(ValueError, match="names the shipments"):
        courier.request_pickup(pickup(WAREHOUSE_PL))


def cargus(fake) -> Cargus:
    return Cargus(fake.subscription_key, fake.username, fake.password, pickup_location_id=fake.pickup_location_id,
                  base_url=f"{fake.url}/api", tokens=TokenCache())


def test_cargus_closes_the_pickup_locations_open_order_for_the_window(fake_cargus):
    result = cargus(fake_cargus).request_pickup(pickup())

    sent = fake_cargus.requests_to("/api/Orders", "PUT")[0].query
    assert result.pickup_id == str(next(iter(fake_cargus.orders)))
    assert sent["locationId"] == [str(fake_cargus.pickup_location_id)] and sent["action"] == ["1"]
    assert sent["PickupStartDate"] == [f"{TOMORROW} 10:00:00"] and sent["PickupEndDate"] == [f"{TOMORROW} 14:00:00"]


def test_the_registry_builds_pickup_capable_clients_by_name(fake_fan):
    courier = make("fancourier", client_id=fake_fan.client_id, username=fake_fan.username,
                   password=fake_fan.password, base_url=fake_fan.url, tokens=TokenCache())

    assert courier.request_pickup(pickup()).pickup_id


# --- DPD Romania: POST /v1/pickup ------------------------------------------------------------------------------

def dpd_ro(fake) -> DpdRomania:
    return DpdRomania(fake.username, fake.password, service_id=2505, sender_client_id=77, base_url=f"{fake.url}/v1",
                      sleep=Sleeps(), tokens=TokenCache())


def test_dpd_romania_gets_a_pickup_for_the_named_shipments_from_the_start_of_the_window(fake_dpd_ro):
    courier = dpd_ro(fake_dpd_ro)
    shipment = courier.create_shipment(ro_request("CMD-1")).shipment_id

    result = courier.request_pickup(pickup(shipments=(shipment,)))

    sent = fake_dpd_ro.requests_to("/v1/pickup", "POST")[0].body
    assert result.pickup_id == str(next(iter(fake_dpd_ro.pickups)))
    assert sent["userName"] == fake_dpd_ro.username and sent["pickupScope"] == "EXPLICIT_SHIPMENT_ID_LIST"
    assert sent["explicitShipmentIdList"] == [shipment] and sent["visitEndTime"] == "14:00"
    assert dt.datetime.fromisoformat(sent["pickupDateTime"]).replace(tzinfo=None) == \
        dt.datetime.combine(TOMORROW, dt.time(10))
    assert sent["autoAdjustPickupDate"] is False and sent["phoneNumber"] == {"number": "+40723000000"}


def test_dpd_romania_refuses_a_pickup_in_the_past_in_its_own_words(fake_dpd_ro):
    courier = dpd_ro(fake_dpd_ro)
    shipment = courier.create_shipment(ro_request("CMD-1")).shipment_id

    with pytest.raises(CourierRefused, match="must be in the future") as refused:
        courier.request_pickup(pickup(day=dt.date.today() - dt.timedelta(days=1), shipments=(shipment,)))

    assert "pickupDateTime" in refused.value.errors and fake_dpd_ro.pickups == {}


def test_dpd_romania_needs_the_shipments_to_collect(fake_dpd_ro):
    with pytest.raises(ValueError, match="names the shipments"):
        dpd_ro(fake_dpd_ro).request_pickup(pickup())
    assert fake_dpd_ro.requests == []


# --- DPD Polska: packagesPickupCallV4 --------------------------------------------------------------------------

def dpd_pl(fake) -> DpdPolska:
    return DpdPolska(fake.login, fake.password, fake.master_fid, base_url=f"{fake.url}/packages",
                     info_url=f"{fake.url}/events", sleep=Sleeps(), tokens=TokenCache())


def _pickup_params(fake) -> ET.Element:
    body = ET.fromstring(fake.requests_to("/packages")[-1].body)
    return body.find(".//{http://dpdservices.dpd.com.pl/}packagesPickupCallV4/dpdPickupParamsV3")


def test_dpd_polska_pickup_call_is_a_simplified_insert_paid_by_our_fid(fake_dpd_pl):
    result = dpd_pl(fake_dpd_pl).request_pickup(pickup(WAREHOUSE_PL))

    params = _pickup_params(fake_dpd_pl)
    details = params.find("pickupCallSimplifiedDetails")
    assert result.pickup_id in fake_dpd_pl.pickup_calls
    assert result.details == {"checkSum": fake_dpd_pl.pickup_calls[result.pickup_id]["checkSum"]}
    assert params.findtext("operationType") == "INSERT" and params.findtext("orderType") == "DOMESTIC"
    assert params.findtext("pickupDate") == TOMORROW.isoformat()
    assert (params.findtext("pickupTimeFrom"), params.findtext("pickupTimeTo")) == ("10:00", "14:00")
    assert details.findtext("pickupPayer/payerNumber") == fake_dpd_pl.master_fid
    assert details.findtext("pickupSender/senderPostalCode") == "31019"
    assert details.findtext("packagesParams/parcelsCount") == "12"
    assert details.findtext("packagesParams/parcelsWeight") == "18.50"


def test_dpd_polska_refuses_a_short_window_with_its_error_code(fake_dpd_pl):
    with pytest.raises(CourierRefused, match="BOK_WS_INCORRECT_PICKUP_TIME") as refused:
        dpd_pl(fake_dpd_pl).request_pickup(pickup(WAREHOUSE_PL, ready_from=dt.time(15), ready_until=dt.time(16)))

    assert "VALIDATION_ERROR" in refused.value.errors and fake_dpd_pl.pickup_calls == {}
    assert str(refused.value).count("BOK_WS_INCORRECT_PICKUP_TIME") == 1  # the courier's words, once


# --- cancelling a pickup ------------------------------------------------------------------------------------------

def fan(fake) -> FanCourier:
    return FanCourier(fake.client_id, fake.username, fake.password, base_url=fake.url, tokens=TokenCache())


def test_fan_courier_deletes_the_courier_order(fake_fan):
    courier = fan(fake_fan)
    asked = courier.request_pickup(pickup())

    courier.cancel_pickup(asked)

    [sent] = fake_fan.requests_to("/order", "DELETE")
    assert sent.query == {"clientId": [fake_fan.client_id], "id": [asked.pickup_id]}
    assert fake_fan.courier_orders[asked.pickup_id]["cancelled"]


def test_fan_courier_refuses_to_cancel_a_collected_order_in_its_own_words(fake_fan):
    courier = fan(fake_fan)
    asked = courier.request_pickup(pickup())
    fake_fan.courier_orders[asked.pickup_id]["collected"] = True

    with pytest.raises(CourierRefused, match="can no longer be deleted"):
        courier.cancel_pickup(asked)


def test_an_expired_token_is_renewed_once_when_cancelling_a_pickup(fake_fan):
    courier = fan(fake_fan)
    asked = courier.request_pickup(pickup())
    fake_fan.expire_tokens()

    courier.cancel_pickup(asked)

    assert fake_fan.logins == 2 and [r.method for r in fake_fan.requests_to("/order")] == ["POST", "DELETE", "DELETE"]
    assert fake_fan.courier_orders[asked.pickup_id]["cancelled"]


def test_inpost_deletes_the_dispatch_order(fake_inpost):
    courier = InPost(fake_inpost.api_token, fake_inpost.organization_id, base_url=fake_inpost.url, sleep=Sleeps(),
                     tokens=TokenCache())
    shipment = courier.create_shipment(pl_request("ZAM-1")).shipment_id
    asked = courier.request_pickup(pickup(WAREHOUSE_PL, shipments=(shipment,)))

    courier.cancel_pickup(asked)

    assert fake_inpost.dispatch_orders[int(asked.pickup_id)]["status"] == "canceled"
    with pytest.raises(NotFound):  # a second cancel: ShipX no longer knows the order
        courier.cancel_pickup(asked)


def test_dpd_polska_cancels_with_the_order_number_and_its_checksum(fake_dpd_pl):
    courier = dpd_pl(fake_dpd_pl)
    asked = courier.request_pickup(pickup(WAREHOUSE_PL))

    courier.cancel_pickup(asked)

    params = _pickup_params(fake_dpd_pl)
    assert params.findtext("operationType") == "CANCEL" and params.findtext("orderNumber") == asked.pickup_id
    assert params.findtext("checkSum") == asked.details["checkSum"]
    assert fake_dpd_pl.pickup_calls[asked.pickup_id]["cancelled"]


def test_dpd_polska_denies_cancelling_once_the_courier_is_on_the_way(fake_dpd_pl):
    courier = dpd_pl(fake_dpd_pl)
    asked = courier.request_pickup(pickup(WAREHOUSE_PL))
    fake_dpd_pl.pickup_calls[asked.pickup_id]["collected"] = True

    with pytest.raises(PickupCancelDenied, match="ORDER_CANCEL_DENIED") as denied:
        courier.cancel_pickup(asked)

    assert str(denied.value) == f"dpd_pl did not cancel pickup call {asked.pickup_id} (ORDER_CANCEL_DENIED)"


# --- a cancel whose answer was lost: sent once, so the outcome is reported as unknown -----------------------------

def inpost(fake, **options) -> InPost:
    return InPost(fake.api_token, fake.organization_id, base_url=fake.url, sleep=Sleeps(), tokens=TokenCache(),
                  **options)


def test_fan_courier_reports_a_lost_cancel_answer_as_ambiguous_and_then_no_longer_has_the_order(fake_fan):
    courier = fan(fake_fan)
    asked = courier.request_pickup(pickup())
    fake_fan.fail_next(502, path="/order", after=True)

    with pytest.raises(AmbiguousOutcome):
        courier.cancel_pickup(asked)
    with pytest.raises(NotFound):
        courier.cancel_pickup(asked)

    assert fake_fan.courier_orders[asked.pickup_id]["cancelled"]
    assert len(fake_fan.requests_to("/order", "DELETE")) == 2  # one per call: the first was not replayed


def test_inpost_reports_a_lost_cancel_answer_as_ambiguous_and_then_no_longer_has_the_order(fake_inpost):
    courier = inpost(fake_inpost)
    shipment = courier.create_shipment(pl_request("ZAM-1")).shipment_id
    asked = courier.request_pickup(pickup(WAREHOUSE_PL, shipments=(shipment,)))
    fake_inpost.slow_next(1.0, path=r"/v1/dispatch_orders/\d+")

    with pytest.raises(AmbiguousOutcome):  # the read times out after ShipX deleted it
        inpost(fake_inpost, timeout=(2.0, 0.2)).cancel_pickup(asked)
    with pytest.raises(NotFound):
        courier.cancel_pickup(asked)

    assert fake_inpost.dispatch_orders[int(asked.pickup_id)]["status"] == "canceled"
    assert len(fake_inpost.requests_to(r"/v1/dispatch_orders/\d+", "DELETE")) == 2


def test_dpd_polska_reports_a_lost_cancel_answer_as_ambiguous_and_then_denies_cancelling_again(fake_dpd_pl):
    courier = dpd_pl(fake_dpd_pl)
    asked = courier.request_pickup(pickup(WAREHOUSE_PL))
    fake_dpd_pl.fail_next(503, path="/packages", after=True)

    with pytest.raises(AmbiguousOutcome):
        courier.cancel_pickup(asked)
    with pytest.raises(PickupCancelDenied):
        courier.cancel_pickup(asked)

    assert fake_dpd_pl.pickup_calls[asked.pickup_id]["cancelled"]
    assert sum(b"<operationType>CANCEL</operationType>" in r.body for r in fake_dpd_pl.requests_to("/packages")) == 2


@pytest.mark.parametrize("name", ["cargus", "dpd_ro", "sameday", "manual"])
def test_couriers_without_a_cancel_call_say_so_and_call_nothing(name):
    courier = REGISTRY[name]

    with pytest.raises(Unsupported, match="call the courier"):
        courier.cancel_pickup(object.__new__(courier), PickupResult(name, "123"))
