"""Cargus client over real HTTP to the fake UrgentOnlineAPI: subscription key + token, AWBs, labels, tracing."""
from __future__ import annotations

import datetime as dt
import json

import pytest

from connectors.couriers import Cargus, CourierRefused, TokenCache
from connectors.errors import AuthError
from connectors.records import Address, ShipmentStatus
from tests.fake_couriers import A4, Sleeps, fake_cargus, pdf_pages, ro_request  # noqa: F401 (fixture)

UTC = dt.timezone.utc


def cargus(fake, key: str | None = None, **options) -> Cargus:
    options.setdefault("sleep", Sleeps())
    options.setdefault("tokens", TokenCache())
    return Cargus(key or fake.subscription_key, fake.username, fake.password, pickup_location_id=201266091,
                  base_url=f"{fake.url}/api", **options)


def test_every_call_carries_the_subscription_key_and_one_token_serves_them(fake_cargus):
    courier = cargus(fake_cargus)
    courier.create_shipment(ro_request())
    courier.pickup_points()
    assert fake_cargus.logins == 1
    assert {r.headers["Ocp-Apim-Subscription-Key"] for r in fake_cargus.requests} == {"apim-primary-key"}
    assert fake_cargus.requests_to("/api/LoginUser")[0].body == {"UserName": "shop.ro", "Password": "secret"}


def test_an_expired_token_is_renewed_once(fake_cargus):
    courier = cargus(fake_cargus)
    courier.pickup_points()
    fake_cargus.expire_tokens()
    courier.pickup_points()
    assert fake_cargus.logins == 2


def test_a_refused_subscription_key_is_an_auth_error_without_logging_in_again(fake_cargus):
    with pytest.raises(AuthError, match="subscription key"):
        cargus(fake_cargus, key="revoked").pickup_points()
    assert fake_cargus.logins == 0 and len(fake_cargus.requests) == 1


def test_an_awb_names_our_pickup_location_reference_and_cod_to_the_collector_account(fake_cargus):
    result = cargus(fake_cargus).create_shipment(ro_request("CMD-1024"))
    body = fake_cargus.requests_to("/api/Awbs", "POST")[0].body
    assert body["Sender"] == {"LocationId": 201266091} and body["CustomString"] == "CMD-1024"
    assert body["ServiceId"] == 34 and body["BankRepayment"] == 199.99 and body["CashRepayment"] == 0
    assert body["Recipient"]["StreetName"] == "Str. 11 Iunie" and body["Recipient"]["BuildingNumber"] == "14"
    assert result.tracking_numbers == ("804419419",)


def test_a_ship_and_go_delivery_uses_service_38_and_the_point(fake_cargus):
    cargus(fake_cargus).create_shipment(ro_request(pickup_point_id="114142"))
    body = fake_cargus.requests_to("/api/Awbs", "POST")[0].body
    assert body["ServiceId"] == 38 and body["DeliveryPudoPoint"] == 114142


def test_an_invalid_postcode_is_refused_with_cargus_words(fake_cargus):
    recipient = Address(name="Ion Popescu", street="Str. Lunga 1", city="Iasi", postcode="7002", region="Iasi")
    with pytest.raises(CourierRefused) as refused:
        cargus(fake_cargus).create_shipment(ro_request(recipient=recipient))
    assert refused.value.errors == {"": ["Codul postal nu este valid"]}


def test_a_gateway_error_after_the_awb_was_made_finds_it_by_our_reference(fake_cargus):
    fake_cargus.fail_next(504, path="/api/Awbs", after=True)
    result = cargus(fake_cargus).create_shipment(ro_request("CMD-77"))
    assert len(fake_cargus.awbs) == 1 and result.tracking_numbers == (next(iter(fake_cargus.awbs)),)
    assert len(fake_cargus.requests_to("/api/Awbs", "POST")) == 1


def test_labels_come_base64_in_one_call_and_make_a4_sheets(fake_cargus):
    courier = cargus(fake_cargus)
    results = [courier.create_shipment(ro_request(f"CMD-{n}")) for n in range(6)]
    document = courier.label(results, size="a4_4up")
    [call] = fake_cargus.requests_to("/api/AwbDocuments")
    assert json.loads(call.query["barCodes"][0]) == [int(r.tracking_numbers[0]) for r in results]
    assert call.query["format"] == ["1"] and call.query["type"] == ["PDF"]
    pages = pdf_pages(document.content)
    assert len(pages) == 2 and all(abs(w - A4[0]) < 1 and abs(h - A4[1]) < 1 for w, h in pages)


def test_tracing_maps_event_21_and_descriptions_and_leaves_the_rest_unknown(fake_cargus):
    courier = cargus(fake_cargus)
    barcode = courier.create_shipment(ro_request()).tracking_numbers[0]
    fake_cargus.add_events(barcode, [(1, "Expeditie preluata de curier", "Bucuresti", "2026-11-20T12:00:00"),
                                     (5, "Sosit in depozit", "Iasi", "2026-11-21T06:00:00"),
                                     (7, "Eveniment necunoscut", "Iasi", "2026-11-21T07:00:00"),
                                     (21, "Confirmat", "Iasi", "2026-11-21T13:00:00")])
    [result] = courier.track([barcode])
    assert [e.status for e in result.events] == [ShipmentStatus.PICKED_UP, ShipmentStatus.IN_TRANSIT,
                                                 ShipmentStatus.UNKNOWN, ShipmentStatus.DELIVERED]
    assert result.status is ShipmentStatus.DELIVERED and result.events[-1].raw_code == "21"
    assert result.events[-1].occurred_at == dt.datetime(2026, 11, 21, 11, 0, tzinfo=UTC)


def test_delta_events_keep_only_what_moved_inside_the_window(fake_cargus):
    courier = cargus(fake_cargus)
    barcode = courier.create_shipment(ro_request()).tracking_numbers[0]
    fake_cargus.add_events(barcode, [(1, "Expeditie preluata de curier", "Bucuresti", "2026-11-20T08:00:00"),
                                     (5, "In tranzit", "Bucuresti", "2026-11-20T18:00:00")])
    since = dt.datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    [result] = courier.track_changes(since, since + dt.timedelta(hours=6))
    assert [e.raw_text for e in result.events] == ["In tranzit"]
    assert fake_cargus.requests_to("/api/AwbTrace/GetDeltaEvents")[0].query["FromDate"] == ["11-20-2026"]


def test_cancel_is_true_before_the_first_checkpoint_and_false_after(fake_cargus):
    courier = cargus(fake_cargus)
    first, second = (courier.create_shipment(ro_request(f"CMD-{n}")) for n in range(2))
    fake_cargus.add_events(second.tracking_numbers[0], [(1, "Preluat", "Bucuresti", "2026-11-20T08:00:00")])
    assert courier.cancel(first) is True and courier.cancel(second) is False


def test_ship_and_go_points(fake_cargus):
    [point] = cargus(fake_cargus).pickup_points()
    assert point.id == "114142" and point.address.city == "Magurele" and point.cash_on_delivery is False


def test_cargus_10x14_labels_are_fitted_onto_a6_pages(fake_cargus):
    from tests.fake_couriers import A6

    courier = cargus(fake_cargus)
    results = [courier.create_shipment(ro_request(f"CMD-{n}")) for n in range(2)]
    pages = pdf_pages(courier.label(results, size="a6").content)
    assert len(pages) == 2 and all(abs(w - A6[0]) < 1 and abs(h - A6[1]) < 1 for w, h in pages)
