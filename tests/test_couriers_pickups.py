"""Courier pickup requests, to each courier's documented call, against the loopback fakes; the rest say they cannot."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from connectors.couriers import (
    REGISTRY, Capability, Cargus, CourierRefused, FanCourier, InPost, PickupRequest, TokenCache, Unsupported, make,
)
from connectors.records import Address
from tests.fake_couriers import (  # noqa: F401 (fixtures)
    Sleeps, fake_cargus, fake_fan, fake_inpost, pl_request,
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
        ["cargus", "fancourier", "inpost"]


@pytest.mark.parametrize("name", ["sameday", "dpd_ro", "dpd_pl", "manual"])
def test_couriers_without_it_say_so_and_call_nothing(name):
    courier = REGISTRY[name]

    assert not courier.can(Capability.PICKUP_REQUEST)
    with pytest.raises(Unsupported, match="courier's own panel"):
        courier.request_pickup(object.__new__(courier), pickup())


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
