"""InPost ShipX client over real HTTP to the fake ShipX: shipments to Paczkomats, labels, tracking, points."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from connectors.couriers import CourierRefused, InPost, TokenCache
from connectors.errors import AuthError
from connectors.records import Address, Money, Parcel, ShipmentStatus
from tests.fake_couriers import A6, Sleeps, fake_inpost, pdf_pages, pl_request  # noqa: F401 (fixture)

UTC = dt.timezone.utc


def inpost(fake, token: str | None = None, **options) -> InPost:
    options.setdefault("sleep", Sleeps())
    options.setdefault("tokens", TokenCache())
    return InPost(token or fake.api_token, fake.organization_id, base_url=fake.url, **options)


def test_a_refused_api_token_is_an_auth_error_at_once(fake_inpost):
    with pytest.raises(AuthError, match="token"):
        inpost(fake_inpost, token="revoked").create_shipment(pl_request())
    assert len(fake_inpost.requests) == 1  # a fixed API token has nothing to renew


def test_a_locker_shipment_names_the_paczkomat_and_carries_our_reference(fake_inpost):
    result = inpost(fake_inpost).create_shipment(pl_request("ZAM-2048"))
    body = fake_inpost.requests_to(r"/v1/organizations/\d+/shipments", "POST")[0].body
    assert body["service"] == "inpost_locker_standard" and body["reference"] == "ZAM-2048"
    assert body["custom_attributes"] == {"sending_method": "dispatch_order", "target_point": "KRA010"}
    assert body["parcels"] == [{"template": "small"}] and body["receiver"]["phone"] == "600111222"
    assert body["cod"] == {"amount": 249.9, "currency": "PLN"}
    assert fake_inpost.requests_to(r"/v1/organizations/\d+/shipments", "POST")[0].headers["Authorization"] == \
        f"Bearer {fake_inpost.api_token}"
    assert len(result.tracking_numbers[0]) == 24 and result.shipment_id == "49807"
    assert result.cost == Money(Decimal("15.99"), "PLN")


def test_a_courier_shipment_sends_the_address_and_dimensions_in_millimetres(fake_inpost):
    request = pl_request(pickup_point_id=None,
                         parcels=(Parcel(Decimal("5"), Decimal("20"), Decimal("30"), Decimal("15")),))
    inpost(fake_inpost).create_shipment(request)
    body = fake_inpost.requests_to(r"/v1/organizations/\d+/shipments", "POST")[0].body
    assert body["service"] == "inpost_courier_standard"
    assert body["receiver"]["address"] == {"street": "ul. Długa", "building_number": "5", "flat_number": None,
                                           "city": "Kraków", "post_code": "31-147", "country_code": "PL"}
    assert body["parcels"] == [{"dimensions": {"length": 200, "width": 300, "height": 150, "unit": "mm"},
                                "weight": {"amount": 5, "unit": "kg"}}]


def test_an_invalid_post_code_is_refused_with_the_field_path(fake_inpost):
    recipient = Address(name="Zofia Nowak", street="ul. Długa 5", city="Kraków", postcode="31147", country="PL",
                        phone="600111222")
    with pytest.raises(CourierRefused) as refused:
        inpost(fake_inpost).create_shipment(pl_request(recipient=recipient, pickup_point_id=None))
    assert refused.value.errors == {"receiver.address.post_code": ["invalid"]} and refused.value.status == 422


def test_an_unknown_paczkomat_is_refused(fake_inpost):
    with pytest.raises(CourierRefused) as refused:
        inpost(fake_inpost).create_shipment(pl_request(pickup_point_id="XXX999"))
    assert refused.value.errors == {"custom_attributes.target_point": ["does_not_exist"]}


def test_a_server_error_after_shipx_made_the_shipment_returns_it_instead_of_buying_another(fake_inpost):
    fake_inpost.fail_next(500, path=r"/v1/organizations/\d+/shipments", after=True)
    result = inpost(fake_inpost).create_shipment(pl_request("ZAM-9"))
    assert len(fake_inpost.shipments) == 1 and result.shipment_id == str(next(iter(fake_inpost.shipments)))
    assert result.tracking_numbers and len(fake_inpost.requests_to(r"/v1/organizations/\d+/shipments", "POST")) == 1


def test_a_retry_after_an_ambiguous_outcome_buys_nothing_when_the_shipment_exists(fake_inpost):
    courier = inpost(fake_inpost)
    first = courier.create_shipment(pl_request("ZAM-10"))
    again = courier.create_shipment(pl_request("ZAM-10"), after_ambiguous=True)
    assert again.shipment_id == first.shipment_id and len(fake_inpost.shipments) == 1


def test_a_retry_after_an_ambiguous_outcome_buys_when_nothing_was_made(fake_inpost):
    result = inpost(fake_inpost).create_shipment(pl_request("ZAM-11"), after_ambiguous=True)
    assert result.tracking_numbers and len(fake_inpost.shipments) == 1


def test_labels_for_many_shipments_come_from_one_bulk_call_as_a6(fake_inpost):
    courier = inpost(fake_inpost)
    results = [courier.create_shipment(pl_request(f"ZAM-{n}")) for n in range(3)]
    document = courier.label(results)
    [call] = fake_inpost.requests_to(r"/v1/organizations/\d+/shipments/labels")
    assert call.query["shipment_ids[]"] == [r.shipment_id for r in results]
    assert call.query["format"] == ["pdf"] and call.query["type"] == ["A6"]
    pages = pdf_pages(document.content)
    assert len(pages) == 3 and all(abs(w - A6[0]) < 1 and abs(h - A6[1]) < 1 for w, h in pages)


def test_a_label_asked_for_by_tracking_number_finds_its_shipment_first(fake_inpost):
    courier = inpost(fake_inpost)
    result = courier.create_shipment(pl_request())
    document = courier.label([result.tracking_numbers[0]], size="100x150")
    assert fake_inpost.requests_to(r"/v1/organizations/\d+/shipments", "GET")[-1].query["tracking_number"] == \
        [result.tracking_numbers[0]]
    [(width, height)] = pdf_pages(document.content)
    assert abs(width - 283.46) < 1 and abs(height - 425.2) < 1


def test_zpl_labels_come_per_shipment_and_are_concatenated(fake_inpost):
    courier = inpost(fake_inpost)
    results = [courier.create_shipment(pl_request(f"ZAM-{n}")) for n in range(2)]
    document = courier.label(results, "zpl", "100x150")
    assert document.format == "zpl" and document.content.count(b"^XZ") == 2
    assert [r.query["format"] for r in fake_inpost.requests_to(r"/v1/shipments/\d+/label")] == [["zpl"], ["zpl"]]


def test_tracking_is_public_and_maps_shipx_statuses(fake_inpost):
    fake_inpost.add_tracking("520000011395200025754311", [
        ("confirmed", "2026-11-20T09:00:00.000+01:00"), ("collected_from_sender", "2026-11-20T15:00:00.000+01:00"),
        ("adopted_at_sorting_center", "2026-11-20T22:00:00.000+01:00"),
        ("ready_to_pickup", "2026-11-21T08:30:00.000+01:00")])
    [result] = inpost(fake_inpost).track(["520000011395200025754311"])
    assert "Authorization" not in fake_inpost.requests_to(r"/v1/tracking/.*")[0].headers
    assert result.status is ShipmentStatus.AVAILABLE_FOR_PICKUP
    assert [e.raw_code for e in result.events] == ["confirmed", "collected_from_sender", "adopted_at_sorting_center",
                                                   "ready_to_pickup"]
    assert result.events[-1].occurred_at == dt.datetime(2026, 11, 21, 7, 30, tzinfo=UTC)


def test_a_number_shipx_does_not_know_yet_is_unknown(fake_inpost):
    [result] = inpost(fake_inpost).track(["520000000000000000000000"])
    assert result.status is ShipmentStatus.UNKNOWN and result.events == ()


def test_a_new_shipment_can_be_cancelled_but_not_a_confirmed_one(fake_inpost):
    courier = inpost(fake_inpost, confirm_reads=0)
    fresh = courier.create_shipment(pl_request("ZAM-20"))
    assert fresh.tracking_numbers == () and courier.cancel(fresh) is True
    confirmed = inpost(fake_inpost).create_shipment(pl_request("ZAM-21"))
    assert courier.cancel(confirmed) is False


def test_paczkomats_are_pickup_points(fake_inpost):
    points = inpost(fake_inpost).pickup_points(city="Kraków")
    assert points[0].id == "KRA010" and points[0].kind == "locker" and points[0].address.postcode == "31-147"
    assert fake_inpost.requests_to("/v1/points")[0].query["city"] == ["Kraków"]


def test_a_shipment_shipx_has_not_numbered_yet_comes_back_with_its_id_only_and_confirm_reads_the_number_later(fake_inpost):
    fake_inpost.confirm_after = 10**9
    courier = inpost(fake_inpost, confirm_reads=2)
    pending = courier.create_shipment(pl_request("ZAM-30"))
    assert pending.tracking_numbers == () and pending.shipment_id == "49807"
    assert courier.confirm(pending).tracking_numbers == ()

    fake_inpost.confirm_after = 0
    confirmed = courier.confirm(pending)

    assert confirmed.tracking_numbers == (fake_inpost.shipments[49807]["tracking_number"],)
    assert confirmed.reference == "ZAM-30" and len(fake_inpost.shipments) == 1


def test_many_shipments_are_created_side_by_side_and_answered_in_order(fake_inpost):
    outcomes = inpost(fake_inpost).create_shipments([pl_request(f"ZAM-{n}") for n in range(9)])

    assert [o.reference for o in outcomes] == [f"ZAM-{n}" for n in range(9)]
    assert len({o.shipment_id for o in outcomes}) == 9 and len(fake_inpost.shipments) == 9
