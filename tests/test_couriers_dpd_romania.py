"""DPD Romania client over real HTTP to the fake api.dpd.ro: credentials per body, 200-with-error refusals."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from connectors.couriers import CourierRefused, DpdRomania, TokenCache
from connectors.errors import AuthError
from connectors.records import Address, Money, ShipmentStatus
from tests.fake_couriers import A4, A6, Sleeps, fake_dpd_ro, pdf_pages, ro_request  # noqa: F401 (fixture)

UTC = dt.timezone.utc


def dpd(fake, password: str | None = None, **options) -> DpdRomania:
    options.setdefault("sleep", Sleeps())
    options.setdefault("tokens", TokenCache())
    return DpdRomania(fake.username, password or fake.password, service_id=2505, sender_client_id=77,
                      base_url=f"{fake.url}/v1", **options)


def test_wrong_credentials_are_an_auth_error_even_though_dpd_answers_200(fake_dpd_ro):
    with pytest.raises(AuthError, match="Invalid username or password"):
        dpd(fake_dpd_ro, password="wrong").create_shipment(ro_request())


def test_a_shipment_carries_credentials_our_reference_and_cod(fake_dpd_ro):
    result = dpd(fake_dpd_ro).create_shipment(ro_request("CMD-1024"))
    body = fake_dpd_ro.requests_to("/v1/shipment")[0].body
    assert body["userName"] == fake_dpd_ro.username and body["ref1"] == "CMD-1024"
    assert body["service"]["serviceId"] == 2505 and body["sender"] == {"clientId": 77}
    assert body["service"]["additionalServices"]["cod"] == {"amount": 199.99, "currencyCode": "RON",
                                                            "processingType": "CASH"}
    assert body["recipient"]["address"]["streetNo"] == "14" and body["recipient"]["address"]["countryId"] == 642
    assert result.tracking_numbers == ("80012345678",) and result.cost == Money(Decimal("17.85"), "RON")


def test_a_pickup_office_replaces_the_address(fake_dpd_ro):
    dpd(fake_dpd_ro).create_shipment(ro_request(pickup_point_id="2001"))
    recipient = fake_dpd_ro.requests_to("/v1/shipment")[0].body["recipient"]
    assert recipient["pickupOfficeId"] == 2001 and "address" not in recipient


def test_an_invalid_postcode_comes_back_as_a_refusal_with_its_context(fake_dpd_ro):
    recipient = Address(name="Ion Popescu", street="Str. Lunga 1", city="Iasi", postcode="7002", region="Iasi")
    with pytest.raises(CourierRefused) as refused:
        dpd(fake_dpd_ro).create_shipment(ro_request(recipient=recipient))
    assert refused.value.errors == {"recipient.address.postCode": ["Invalid post code"]}


def test_a_timeout_after_sending_is_resolved_by_tracking_our_reference(fake_dpd_ro):
    fake_dpd_ro.slow_next(1.0, path="/v1/shipment")
    result = dpd(fake_dpd_ro, timeout=(2.0, 0.3)).create_shipment(ro_request("CMD-55"))
    assert len(fake_dpd_ro.shipments) == 1 and result.tracking_numbers == (next(iter(fake_dpd_ro.shipments)),)
    assert fake_dpd_ro.requests_to("/v1/track")[0].body["parcels"] == [{"ref": "CMD-55"}]


def test_dpd_prints_the_a4_four_up_sheet_itself(fake_dpd_ro):
    courier = dpd(fake_dpd_ro)
    results = [courier.create_shipment(ro_request(f"CMD-{n}")) for n in range(5)]
    document = courier.label(results, size="a4_4up")
    [call] = fake_dpd_ro.requests_to("/v1/print")
    assert call.body["paperSize"] == "A4_4xA6" and len(call.body["parcels"]) == 5
    pages = pdf_pages(document.content)
    assert len(pages) == 2 and all(abs(w - A4[0]) < 1 and abs(h - A4[1]) < 1 for w, h in pages)


def test_a6_and_zpl_labels(fake_dpd_ro):
    courier = dpd(fake_dpd_ro)
    results = [courier.create_shipment(ro_request(f"CMD-{n}")) for n in range(2)]
    pages = pdf_pages(courier.label(results, "pdf", "a6").content)
    assert len(pages) == 2 and all(abs(w - A6[0]) < 1 and abs(h - A6[1]) < 1 for w, h in pages)
    assert courier.label(results, "zpl", "100x150").content.count(b"^XZ") == 2


def test_tracking_maps_operation_minus_14_as_delivered_and_keeps_unknown_codes_unknown(fake_dpd_ro):
    courier = dpd(fake_dpd_ro)
    parcel = courier.create_shipment(ro_request()).tracking_numbers[0]
    fake_dpd_ro.add_operations(parcel, [(-4, "Picked up from sender", "2026-11-20T15:00:00+02:00"),
                                        (148, "Mystery scan", "2026-11-21T07:00:00+02:00"),
                                        (-14, "Delivered", "2026-11-21T12:00:00+02:00")])
    [result] = courier.track([parcel])
    assert [e.status for e in result.events] == [ShipmentStatus.PICKED_UP, ShipmentStatus.UNKNOWN,
                                                 ShipmentStatus.DELIVERED]
    assert result.status is ShipmentStatus.DELIVERED and result.events[-1].raw_code == "-14"
    assert result.events[-1].occurred_at == dt.datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def test_cancel_before_any_scan_only(fake_dpd_ro):
    courier = dpd(fake_dpd_ro)
    first, second = (courier.create_shipment(ro_request(f"CMD-{n}")) for n in range(2))
    fake_dpd_ro.add_operations(second.tracking_numbers[0], [(-4, "Picked up", "2026-11-20T15:00:00+02:00")])
    assert courier.cancel(first) is True and courier.cancel(second) is False


def test_offices_and_lockers(fake_dpd_ro):
    [office] = dpd(fake_dpd_ro).pickup_points()
    assert office.id == "2001" and office.kind == "locker" and office.latitude == Decimal("47.1562")


def test_a_two_parcel_shipment_prints_a_label_per_parcel(fake_dpd_ro):
    from connectors.records import Parcel

    courier = dpd(fake_dpd_ro)
    result = courier.create_shipment(ro_request(parcels=(Parcel(Decimal("2")), Parcel(Decimal("3")))))
    assert len(result.parcel_numbers) == 2
    assert len(pdf_pages(courier.label([result], "pdf", "a6").content)) == 2
    assert len(fake_dpd_ro.requests_to("/v1/print")[0].body["parcels"]) == 2
