"""The couriers' own handover printouts (InPost dispatch order printout, Cargus borderou, DPD Polska protocol) over
real HTTP to the loopback fakes; couriers that issue none say so, and our own handover list stays the document."""
from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest

from connectors.couriers import (
    REGISTRY, STAFF_WAITING_RETRY, STAFF_WAITING_TIMEOUT, Capability, Cargus, CourierRefused, DpdPolska, InPost,
    PickupRequest, PickupResult, RetryPolicy, TokenCache, Unsupported, decode_pdf,
)
from connectors.errors import InvalidPayload, TemporaryError
from connectors.records import Address
from tests.fake_couriers import (  # noqa: F401 (fixtures)
    A4, Sleeps, fake_cargus, fake_dpd_pl, fake_inpost, pdf_pages, pl_request, ro_request,
)

TOMORROW = dt.date.today() + dt.timedelta(days=1)
WAREHOUSE_PL = Address(name="Kwiaciarnia Róża", street="ul. Floriańska 3", city="Kraków", postcode="31-019",
                       country="PL", phone="+48600111222")
WAREHOUSE_RO = Address(name="Magazin Floare SRL", street="Str. Lunga 10", city="Bucuresti", postcode="010011",
                       region="Bucuresti", country="RO", phone="+40723000000")


def pickup(address: Address, shipments: tuple[str, ...] = ()) -> PickupRequest:
    return PickupRequest(address=address, day=TOMORROW, ready_from=dt.time(10), ready_until=dt.time(14), parcels=2,
                         weight_kg=Decimal("3"), shipments=shipments)


def pdf_text(content: bytes) -> str:
    import io

    from pypdf import PdfReader

    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages)


def test_only_couriers_that_issue_a_handover_printout_declare_it():
    assert sorted(name for name, cls in REGISTRY.items() if cls.can(Capability.HANDOVER_DOCUMENT)) == \
        ["cargus", "dpd_pl", "inpost"]


@pytest.mark.parametrize("name", ["fancourier", "sameday", "dpd_ro", "manual"])
def test_couriers_without_a_printout_say_our_handover_list_is_the_document(name):
    courier = REGISTRY[name]

    with pytest.raises(Unsupported, match="our own handover list"):
        courier.handover_document(object.__new__(courier), ["123"])


def test_inpost_prints_the_dispatch_orders_printout(fake_inpost):
    courier = InPost(fake_inpost.api_token, fake_inpost.organization_id, base_url=fake_inpost.url, sleep=Sleeps(),
                     tokens=TokenCache())
    shipment = courier.create_shipment(pl_request("ZAM-1"))
    asked = courier.request_pickup(pickup(WAREHOUSE_PL, (shipment.shipment_id,)))

    document = courier.handover_document([shipment], asked)

    [sent] = fake_inpost.requests_to(r"/v1/organizations/\d+/dispatch_orders/printouts", "GET")
    assert sent.query["dispatch_order_id"] == [asked.pickup_id] and sent.headers["Authorization"].startswith("Bearer")
    assert document.media_type == "application/pdf" and document.reference == asked.pickup_id
    assert pdf_pages(document.content) == [pytest.approx(A4, abs=1)]
    assert f"Dispatch order {asked.pickup_id}" in pdf_text(document.content)


def test_inpost_and_cargus_printouts_need_the_pickup_order_first():
    for courier in (REGISTRY["inpost"], REGISTRY["cargus"]):
        with pytest.raises(ValueError, match="request the pickup first"):
            courier.handover_document(object.__new__(courier), ["123"])


def cargus(fake) -> Cargus:
    return Cargus(fake.subscription_key, fake.username, fake.password, pickup_location_id=fake.pickup_location_id,
                  base_url=f"{fake.url}/api", tokens=TokenCache())


def test_cargus_prints_the_pickup_orders_borderou(fake_cargus):
    courier = cargus(fake_cargus)
    awb = courier.create_shipment(ro_request("CMD-1")).shipment_id
    asked = courier.request_pickup(pickup(WAREHOUSE_RO))

    document = courier.handover_document([awb], asked)

    [sent] = fake_cargus.requests_to("/api/OrderDocuments", "GET")
    assert sent.query == {"orderId": [asked.pickup_id], "docType": ["0"]}
    assert document.content.startswith(b"%PDF") and awb in pdf_text(document.content)


def test_cargus_renews_an_expired_token_once_for_the_borderou(fake_cargus):
    courier = cargus(fake_cargus)
    courier.create_shipment(ro_request("CMD-1"))
    asked = courier.request_pickup(pickup(WAREHOUSE_RO))
    fake_cargus.expire_tokens()

    courier.handover_document([], asked)

    assert fake_cargus.logins == 2 and len(fake_cargus.requests_to("/api/OrderDocuments")) == 2


def test_cargus_unknown_order_is_not_found_in_its_words(fake_cargus):
    from connectors.errors import NotFound

    with pytest.raises(NotFound, match="Comanda nu exista"):
        cargus(fake_cargus).handover_document([], PickupResult("cargus", "999"))


def dpd_pl(fake) -> DpdPolska:
    return DpdPolska(fake.login, fake.password, fake.master_fid, base_url=f"{fake.url}/packages",
                     info_url=f"{fake.url}/events", sleep=Sleeps(), tokens=TokenCache())


def test_dpd_polska_prints_the_handover_protocol_for_the_waybills(fake_dpd_pl):
    courier = dpd_pl(fake_dpd_pl)
    shipment = courier.create_shipment(pl_request("ZAM-1", pickup_point_id=None))

    document = courier.handover_document([shipment], sender=WAREHOUSE_PL)

    call = ET.fromstring(fake_dpd_pl.requests_to("/packages")[-1].body) \
        .find(".//{http://dpdservices.dpd.com.pl/}generateProtocolV2")
    assert [w.text for w in call.iter("waybill")] == list(shipment.tracking_numbers)
    assert call.findtext("dpdServicesParamsV1/pickupAddress/fid") == fake_dpd_pl.master_fid
    assert call.findtext("outputDocFormatV1") == "PDF" and call.findtext("outputDocPageFormatV1") == "A4"
    assert document.reference == "PROT000001" and shipment.tracking_numbers[0] in pdf_text(document.content)


def test_dpd_polska_refuses_a_protocol_for_unknown_waybills(fake_dpd_pl):
    with pytest.raises(CourierRefused, match="NOT_FOUND"):
        dpd_pl(fake_dpd_pl).handover_document(["0000000000001Q"])


# --- one base64 PDF check for every courier; retries that fit while staff wait ------------------------------------

def test_a_base64_document_is_read_only_when_it_is_a_pdf():
    import base64

    assert decode_pdf(base64.b64encode(b"%PDF-1.4 x").decode(), "cargus borderou") == b"%PDF-1.4 x"
    with pytest.raises(InvalidPayload, match="^cargus borderou: the answer is not base64$"):
        decode_pdf("not base64!", "cargus borderou")
    with pytest.raises(InvalidPayload, match="^dpd_pl protocol: the decoded answer is not a PDF$"):
        decode_pdf(base64.b64encode(b"<html>").decode(), "dpd_pl protocol")


class Clock:
    """A clock that moves on by `step` seconds each time it is read (each attempt takes that long)."""

    def __init__(self, step: float):
        self.now, self.step = 1000.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def printout_tries(fake, *, step: float, retry: RetryPolicy) -> int:
    courier = InPost(fake.api_token, fake.organization_id, base_url=fake.url, sleep=Sleeps(), tokens=TokenCache(),
                     retry=retry, timeout=STAFF_WAITING_TIMEOUT, clock=Clock(step))
    shipment = courier.create_shipment(pl_request("ZAM-1"))
    asked = courier.request_pickup(pickup(WAREHOUSE_PL, (shipment.shipment_id,)))
    path = r"/v1/organizations/\d+/dispatch_orders/printouts"
    fake.fail_next(503, path=path, times=10)
    with pytest.raises(TemporaryError):
        courier.handover_document([shipment], asked)
    return len(fake.requests_to(path))


def test_while_staff_wait_a_failed_call_is_tried_twice_at_most(fake_inpost):
    assert printout_tries(fake_inpost, step=0.1, retry=STAFF_WAITING_RETRY) == 2


def test_no_retry_is_started_that_could_outlast_the_budget(fake_inpost):
    # the first attempt took 10 s: another one (up to 20 s of timeouts) would end past the 25 s budget
    assert printout_tries(fake_inpost, step=10, retry=STAFF_WAITING_RETRY) == 1


def test_background_calls_keep_every_attempt(fake_inpost):
    assert printout_tries(fake_inpost, step=10, retry=RetryPolicy()) == 4
