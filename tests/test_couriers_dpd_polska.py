"""DPD Polska client over real HTTP to the fake DPDServices/DPDInfoServices: SOAP envelopes, waybills, labels."""
from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import pytest

from connectors.couriers import CourierRefused, DpdPolska, TokenCache
from connectors.errors import AmbiguousOutcome, AuthError
from connectors.records import Address, ShipmentStatus
from tests.fake_couriers import A4, Sleeps, fake_dpd_pl, pdf_pages, pl_request  # noqa: F401 (fixture)

UTC = dt.timezone.utc
THERMAL = (283.46, 425.2)


def dpd(fake, password: str | None = None, **options) -> DpdPolska:
    options.setdefault("sleep", Sleeps())
    options.setdefault("tokens", TokenCache())
    return DpdPolska(fake.login, password or fake.password, fake.master_fid, base_url=f"{fake.url}/packages",
                     info_url=f"{fake.url}/events", **options)


def courier_request(reference="ZAM-2048", **changes):
    return pl_request(reference, pickup_point_id=None, **changes)


def test_wrong_credentials_come_back_as_a_soap_fault_and_are_an_auth_error(fake_dpd_pl):
    with pytest.raises(AuthError, match="INCORRECT_LOGIN_OR_PASSWORD"):
        dpd(fake_dpd_pl, password="wrong").create_shipment(courier_request())
    assert len(fake_dpd_pl.requests) == 1  # a fault is an answer, not a server error to retry


def test_a_package_is_a_soap_call_with_our_reference_cod_and_auth(fake_dpd_pl):
    result = dpd(fake_dpd_pl).create_shipment(courier_request("ZAM-2048"))
    [sent] = fake_dpd_pl.requests_to("/packages")
    assert sent.headers["Content-Type"].startswith("text/xml")
    call = ET.fromstring(sent.body).find(".//{http://dpdservices.dpd.com.pl/}generatePackagesNumbersV4")
    package = call.find("openUMLFeV3/packages")
    assert package.findtext("reference") == "ZAM-2048" and package.findtext("ref1") == "ZAM-2048"
    assert package.findtext("receiver/postalCode") == "31147" and package.findtext("sender/fid") == "1495"
    assert package.findtext("services/cod/amount") == "249.90" and package.findtext("services/cod/currency") == "PLN"
    assert call.findtext("authDataV1/masterFid") == "1495"
    assert result.tracking_numbers == ("0000092494467Q",)


def test_a_pickup_point_delivery_names_the_pudo(fake_dpd_pl):
    dpd(fake_dpd_pl).create_shipment(pl_request(pickup_point_id="PL11033"))
    body = ET.fromstring(fake_dpd_pl.requests_to("/packages")[0].body)
    assert body.findtext(".//services/dpdPickup/pudo") == "PL11033"


def test_an_invalid_postcode_is_refused_with_dpds_validation_code(fake_dpd_pl):
    recipient = Address(name="Zofia Nowak", street="ul. Długa 5", city="Kraków", postcode="3114", country="PL")
    with pytest.raises(CourierRefused) as refused:
        dpd(fake_dpd_pl).create_shipment(courier_request(recipient=recipient))
    assert list(refused.value.errors) == ["INCORRECT_RECEIVER_POSTAL_CODE"]


def test_a_timeout_on_a_package_call_is_ambiguous_and_never_resent(fake_dpd_pl):
    fake_dpd_pl.slow_next(1.0, path="/packages")
    with pytest.raises(AmbiguousOutcome):
        dpd(fake_dpd_pl, timeout=(2.0, 0.3)).create_shipment(courier_request())
    assert len(fake_dpd_pl.requests_to("/packages")) == 1


def test_labels_come_for_the_label_printer_and_make_a4_sheets(fake_dpd_pl):
    courier = dpd(fake_dpd_pl)
    results = [courier.create_shipment(courier_request(f"ZAM-{n}")) for n in range(5)]
    thermal = courier.label(results, "pdf", "100x150")
    pages = pdf_pages(thermal.content)
    assert len(pages) == 5 and all(abs(w - THERMAL[0]) < 1 and abs(h - THERMAL[1]) < 1 for w, h in pages)
    sheets = pdf_pages(courier.label(results, "pdf", "a4_4up").content)
    assert len(sheets) == 2 and all(abs(w - A4[0]) < 1 and abs(h - A4[1]) < 1 for w, h in sheets)
    call = ET.fromstring(fake_dpd_pl.requests_to("/packages")[-1].body)
    assert call.findtext(".//outputDocPageFormatV1") == "LBL_PRINTER"
    assert [w.text for w in call.iter("waybill")] == [r.tracking_numbers[0] for r in results]


def test_zpl_labels(fake_dpd_pl):
    courier = dpd(fake_dpd_pl)
    result = courier.create_shipment(courier_request())
    assert courier.label([result], "zpl", "100x150").content.count(b"^XZ") == 1


def test_events_come_from_info_services_and_map_codes_then_words(fake_dpd_pl):
    courier = dpd(fake_dpd_pl)
    waybill = courier.create_shipment(courier_request()).tracking_numbers[0]
    fake_dpd_pl.add_events(waybill, [("030103", "Przesyłka odebrana przez Kuriera", "2026-11-20 15:00:00"),
                                     ("040101", "Przyjęta w oddziale DPD", "2026-11-20 22:00:00"),
                                     ("999999", "Zdarzenie bez opisu w tabeli", "2026-11-21 06:00:00"),
                                     ("190101", "Przesyłka doręczona", "2026-11-21 12:00:00")])
    [result] = courier.track([waybill])
    sent = ET.fromstring(fake_dpd_pl.requests_to("/events")[0].body)
    assert sent.findtext(".//waybill") == waybill and sent.findtext(".//authDataV1/channel") == "1495"
    assert [e.status for e in result.events] == [ShipmentStatus.PICKED_UP, ShipmentStatus.IN_TRANSIT,
                                                 ShipmentStatus.UNKNOWN, ShipmentStatus.DELIVERED]
    assert result.events[-1].occurred_at == dt.datetime(2026, 11, 21, 11, 0, tzinfo=UTC)  # 12:00 in Warsaw


def test_a_two_parcel_package_gets_two_waybills_and_two_labels(fake_dpd_pl):
    from decimal import Decimal

    from connectors.records import Parcel

    courier = dpd(fake_dpd_pl)
    result = courier.create_shipment(courier_request(parcels=(Parcel(Decimal("2")), Parcel(Decimal("3")))))
    assert len(result.tracking_numbers) == 2
    assert len(pdf_pages(courier.label([result], "pdf", "100x150").content)) == 2
