"""Sameday client over real HTTP to the fake Sameday API: X-AUTH-TOKEN, AWBs, easybox, labels, status-sync."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from connectors.couriers import CourierRefused, Sameday, TokenCache
from connectors.errors import AmbiguousOutcome, AuthError
from connectors.records import Money, ShipmentStatus
from tests.fake_couriers import A4, A6, Sleeps, fake_sameday, pdf_pages, ro_request  # noqa: F401 (fixture)

UTC = dt.timezone.utc


def sameday(fake, **options) -> Sameday:
    options.setdefault("sleep", Sleeps())
    options.setdefault("tokens", TokenCache())
    return Sameday(fake.username, fake.password, pickup_point_id=1, service_id=7, locker_service_id=15,
                   base_url=fake.url, **options)


def test_authenticate_sends_the_credentials_as_headers_and_the_token_is_reused(fake_sameday):
    courier = sameday(fake_sameday)
    courier.pickup_points()
    courier.pickup_points()
    [login] = fake_sameday.requests_to("/api/authenticate")
    assert login.headers["X-Auth-Username"] == fake_sameday.username and login.body == {"remember_me": "true"}
    assert fake_sameday.requests_to("/api/client/lockers")[1].headers["X-AUTH-TOKEN"] in fake_sameday.tokens


def test_an_expired_token_is_renewed_once(fake_sameday):
    courier = sameday(fake_sameday)
    courier.pickup_points()
    fake_sameday.expire_tokens()
    assert len(courier.pickup_points()) == 2 and fake_sameday.logins == 2


def test_a_403_after_renewal_is_an_auth_error(fake_sameday):
    fake_sameday.fail_next(403, path="/api/client/lockers", body={"code": 403, "message": "Forbidden"}, times=2)
    with pytest.raises(AuthError, match="Forbidden"):
        sameday(fake_sameday).pickup_points()
    assert fake_sameday.logins == 2


def test_an_awb_is_posted_form_encoded_with_our_reference_and_parcels(fake_sameday):
    result = sameday(fake_sameday).create_shipment(ro_request("CMD-1024"))
    form = fake_sameday.requests_to("/api/awb", "POST")[0].body
    assert form["clientInternalReference"] == "CMD-1024" and form["pickupPoint"] == "1" and form["service"] == "7"
    assert form["cashOnDelivery"] == "199.99" and form["currency"] == "RON"
    assert form["awbRecipient[cityString]"] == "Iasi" and form["awbRecipient[postalCode]"] == "700259"
    assert form["parcels[0][weight]"] == "1.5" and form["packageNumber"] == "1"
    awb = result.tracking_numbers[0]
    assert awb.startswith("1SDY") and result.parcel_numbers == (f"{awb}001",)
    assert result.cost == Money(Decimal("12.34"), "RON")


def test_an_easybox_delivery_names_the_locker_and_the_locker_service(fake_sameday):
    sameday(fake_sameday).create_shipment(ro_request(pickup_point_id="1001"))
    form = fake_sameday.requests_to("/api/awb", "POST")[0].body
    assert form["lockerLastMile"] == "1001" and form["service"] == "15"


def test_an_invalid_postcode_is_refused_with_the_field_path(fake_sameday):
    recipient = ro_request().recipient.__class__(name="Ion Popescu", street="Str. Lunga 1", city="Iasi",
                                                 postcode="7002", region="Iasi", country="RO")
    with pytest.raises(CourierRefused) as refused:
        sameday(fake_sameday).create_shipment(ro_request(recipient=recipient))
    assert refused.value.errors == {"awbRecipient.postalCode": ["Invalid postal code."]}


def test_an_unknown_easybox_is_refused(fake_sameday):
    with pytest.raises(CourierRefused, match="locker"):
        sameday(fake_sameday).create_shipment(ro_request(pickup_point_id="999999"))


def test_a_server_error_after_sameday_made_the_awb_is_ambiguous_and_never_resent(fake_sameday):
    fake_sameday.fail_next(500, path="/api/awb", after=True)
    courier = sameday(fake_sameday)
    with pytest.raises(AmbiguousOutcome):
        courier.create_shipment(ro_request("CMD-5"))
    with pytest.raises(AmbiguousOutcome, match="panel"):
        courier.create_shipment(ro_request("CMD-5"), after_ambiguous=True)
    assert len(fake_sameday.requests_to("/api/awb", "POST")) == 1 and len(fake_sameday.awbs) == 1


def test_a_rate_limited_awb_is_retried_and_bought_once(fake_sameday):
    sleeps = Sleeps()
    fake_sameday.fail_next(429, path="/api/awb", headers={"Retry-After": "1"})
    sameday(fake_sameday, sleep=sleeps).create_shipment(ro_request())
    assert sleeps == [1.0] and len(fake_sameday.awbs) == 1


def test_labels_are_fetched_per_awb_as_a6_and_joined_into_one_pdf(fake_sameday):
    courier = sameday(fake_sameday)
    results = [courier.create_shipment(ro_request(f"CMD-{n}")) for n in range(3)]
    document = courier.label(results)
    assert [r.path.rsplit("/", 1)[1] for r in fake_sameday.requests_to(r"/api/awb/download/.*")] == ["A6"] * 3
    pages = pdf_pages(document.content)
    assert len(pages) == 3 and all(abs(w - A6[0]) < 1 and abs(h - A6[1]) < 1 for w, h in pages)


def test_five_sameday_labels_make_two_a4_sheets(fake_sameday):
    courier = sameday(fake_sameday)
    results = [courier.create_shipment(ro_request(f"CMD-{n}")) for n in range(5)]
    pages = pdf_pages(courier.label(results, size="a4_4up").content)
    assert len(pages) == 2 and all(abs(w - A4[0]) < 1 and abs(h - A4[1]) < 1 for w, h in pages)


def test_zpl_is_refused_because_sameday_prints_only_pdf(fake_sameday):
    from connectors.couriers import Unsupported

    with pytest.raises(Unsupported):
        sameday(fake_sameday).label(["1SDY1"], "zpl")


def test_awb_status_maps_the_history_and_keeps_sameday_ids_and_words(fake_sameday):
    courier = sameday(fake_sameday)
    fake_sameday.issued_at = "2026-11-20T10:00:00+0200"
    awb = courier.create_shipment(ro_request()).tracking_numbers[0]
    fake_sameday.add_status(awb, 4, "Expeditie ridicata", "2026-11-20T12:00:00+0200")
    fake_sameday.add_status(awb, 33, "In livrare la curier", "2026-11-21T09:00:00+0200")
    fake_sameday.add_status(awb, 9, "Livrata cu succes", "2026-11-21T12:30:00+0200")
    [result] = courier.track([awb])
    assert result.status is ShipmentStatus.DELIVERED
    assert [e.raw_code for e in result.events] == ["1", "4", "33", "9"]
    assert result.events[-1].raw_text == "Livrata cu succes"
    assert result.events[-1].occurred_at == dt.datetime(2026, 11, 21, 10, 30, tzinfo=UTC)


def test_a_cancelled_awb_is_cancelled_whatever_its_last_status(fake_sameday):
    courier = sameday(fake_sameday)
    result = courier.create_shipment(ro_request())
    assert courier.cancel(result) is True
    [tracked] = courier.track(result.tracking_numbers)
    assert tracked.status is ShipmentStatus.CANCELLED


def test_a_picked_up_awb_cannot_be_cancelled(fake_sameday):
    courier = sameday(fake_sameday)
    result = courier.create_shipment(ro_request())
    fake_sameday.add_status(result.tracking_numbers[0], 4, "Expeditie ridicata", "2026-11-20T12:00:00+0200")
    assert courier.cancel(result) is False


def test_the_status_feed_is_read_in_windows_of_two_hours_and_grouped_by_awb(fake_sameday):
    courier = sameday(fake_sameday)
    first, second = (courier.create_shipment(ro_request(f"CMD-{n}")).tracking_numbers[0] for n in range(2))
    fake_sameday.add_status(first, 4, "Expeditie ridicata", "2026-11-20T09:30:00+0200")
    fake_sameday.add_status(first, 78, "Colet incarcat in easybox", "2026-11-20T13:10:00+0200")
    fake_sameday.add_status(second, 4, "Expeditie ridicata", "2026-11-20T12:05:00+0200")
    since = dt.datetime(2026, 11, 20, 7, 0, tzinfo=UTC)  # 09:00 in Bucharest
    changes = {r.tracking_number: r for r in courier.track_changes(since, since + dt.timedelta(hours=5))}
    windows = [(int(r.query["startTimestamp"][0]), int(r.query["endTimestamp"][0]))
               for r in fake_sameday.requests_to("/api/client/status-sync")]
    assert len(windows) == 3 and all(end - start <= 7200 for start, end in windows)
    assert windows[0][0] == int(since.timestamp()) and windows[-1][1] == int(since.timestamp()) + 5 * 3600
    assert changes[first].status is ShipmentStatus.AVAILABLE_FOR_PICKUP and len(changes[first].events) == 2
    assert changes[second].status is ShipmentStatus.PICKED_UP


def test_easybox_lockers_are_pickup_points(fake_sameday):
    points = sameday(fake_sameday).pickup_points()
    assert [p.id for p in points] == ["1001", "1002"] and points[0].kind == "locker"
    assert points[0].cash_on_delivery is True and points[1].cash_on_delivery is False
    assert points[0].address.postcode == "041337" and points[0].longitude == Decimal("26.140431")
