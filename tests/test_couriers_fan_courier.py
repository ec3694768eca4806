"""FAN Courier client over real HTTP to the fake FAN API v2: tokens, AWBs without double buying, labels, tracking."""
from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest

from connectors.couriers import CourierRefused, FanCourier, TokenCache
from connectors.couriers.base import RetryPolicy
from connectors.errors import AmbiguousOutcome, AuthError, RateLimited
from connectors.records import Money, ShipmentStatus
from tests.fake_couriers import A4, A6, Sleeps, fake_fan, pdf_pages, ro_request  # noqa: F401 (fixture)

UTC = dt.timezone.utc


def fan(fake, **options) -> FanCourier:
    options.setdefault("sleep", Sleeps())
    options.setdefault("tokens", TokenCache())
    return FanCourier(fake.client_id, fake.username, fake.password, base_url=fake.url, **options)


def approx_size(pages, size):
    return all(abs(w - size[0]) < 1 and abs(h - size[1]) < 1 for w, h in pages)


# --- tokens ----------------------------------------------------------------------------------------------------

def test_one_login_serves_every_call_of_the_account_even_from_new_client_objects(fake_fan):
    tokens = TokenCache()
    awb = fan(fake_fan, tokens=tokens).create_shipment(ro_request()).tracking_numbers[0]
    fan(fake_fan, tokens=tokens).track([awb])
    fan(fake_fan, tokens=tokens).label([awb])
    assert fake_fan.logins == 1
    assert all(r.headers["Authorization"].startswith("Bearer 1|") for r in fake_fan.requests if r.path != "/login")


def test_an_expired_token_is_renewed_once_and_the_call_replayed(fake_fan):
    courier = fan(fake_fan)
    awb = courier.create_shipment(ro_request()).tracking_numbers[0]
    fake_fan.expire_tokens()
    [result] = courier.track([awb])
    assert result.status is ShipmentStatus.CREATED and fake_fan.logins == 2
    assert [r.path for r in fake_fan.requests][-3:] == ["/reports/awb/tracking", "/login", "/reports/awb/tracking"]


def test_a_token_refused_again_after_renewal_is_an_auth_error_not_a_loop(fake_fan):
    courier = fan(fake_fan)
    courier.pickup_points()
    fake_fan.fail_next(401, path="/reports/pickup-points", body={"status": "error", "message": "Unauthenticated."},
                       times=2)
    with pytest.raises(AuthError, match="Unauthenticated"):
        courier.pickup_points()
    assert fake_fan.logins == 2 and len(fake_fan.requests_to("/reports/pickup-points")) == 3


def test_wrong_credentials_are_an_auth_error(fake_fan):
    with pytest.raises(AuthError, match="Invalid credentials"):
        FanCourier(fake_fan.client_id, fake_fan.username, "wrong", base_url=fake_fan.url, tokens=TokenCache(),
                   sleep=Sleeps()).track(["1"])


def test_threads_that_need_a_token_at_once_share_one_login(fake_fan):
    courier = fan(fake_fan)
    awb = courier.create_shipment(ro_request()).tracking_numbers[0]
    fake_fan.expire_tokens()
    errors = []

    def poll():
        try:
            courier.track([awb])
        except Exception as exc:  # noqa: BLE001 (the assertion below reports it)
            errors.append(exc)

    threads = [threading.Thread(target=poll) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and fake_fan.logins == 2


# --- creating AWBs -----------------------------------------------------------------------------------------------

def test_an_awb_is_created_with_the_documented_payload_and_our_reference(fake_fan):
    result = fan(fake_fan).create_shipment(ro_request("CMD-1024"))
    sent = fake_fan.requests_to("/intern-awb")[0].body
    shipment = sent["shipments"][0]
    assert sent["clientId"] == fake_fan.client_id
    assert shipment["info"]["content"] == "CMD-1024" and shipment["info"]["cod"] == 199.99
    assert shipment["info"]["packages"] == {"parcel": 1, "envelope": 0} and shipment["info"]["weight"] == 1.5
    assert shipment["recipient"]["address"]["street"] == "Str. 11 Iunie"
    assert shipment["recipient"]["address"]["streetNo"] == "14"
    assert shipment["recipient"]["address"]["locality"] == "Iasi"
    assert result.tracking_numbers == ("2332300120218",) and result.cost == Money(Decimal("30.53"), "RON")
    assert result.courier == "fancourier" and result.reference == "CMD-1024"


def test_a_fanbox_delivery_names_the_locker_and_the_fanbox_service(fake_fan):
    fan(fake_fan).create_shipment(ro_request(pickup_point_id="F1011137"))
    shipment = fake_fan.requests_to("/intern-awb")[0].body["shipments"][0]
    assert shipment["recipient"]["address"]["pickupLocationId"] == "F1011137"
    assert shipment["info"]["service"] == "FANbox" and "W" in shipment["info"]["options"]


def test_an_invalid_postcode_is_refused_with_fans_field_error(fake_fan):
    recipient = ro_request().recipient.__class__(name="Ion Popescu", street="Str. Lunga 1", city="Iasi",
                                                 postcode="70-025", region="Iasi", country="RO")
    with pytest.raises(CourierRefused) as refused:
        fan(fake_fan).create_shipment(ro_request(recipient=recipient))
    assert "recipient.address.zipCode" in refused.value.errors
    assert fake_fan.awbs == {}


def test_a_server_error_after_fan_made_the_awb_returns_that_awb_instead_of_buying_another(fake_fan):
    fake_fan.fail_next(502, path="/intern-awb", after=True)
    result = fan(fake_fan).create_shipment(ro_request("CMD-7"))
    assert len(fake_fan.awbs) == 1 and result.tracking_numbers == (next(iter(fake_fan.awbs)),)
    assert len(fake_fan.requests_to("/intern-awb")) == 1 and fake_fan.requests_to("/reports/awb")


def test_a_timeout_after_sending_is_resolved_by_reference_not_by_sending_again(fake_fan):
    fake_fan.slow_next(1.0, path="/intern-awb")
    courier = fan(fake_fan, timeout=(2.0, 0.3))
    result = courier.create_shipment(ro_request("CMD-8"))
    assert len(fake_fan.awbs) == 1 and result.tracking_numbers == (next(iter(fake_fan.awbs)),)
    assert len(fake_fan.requests_to("/intern-awb")) == 1


def test_a_retry_after_an_ambiguous_outcome_finds_the_first_awb_and_buys_nothing(fake_fan):
    courier = fan(fake_fan)
    first = courier.create_shipment(ro_request("CMD-9"))
    again = courier.create_shipment(ro_request("CMD-9"), after_ambiguous=True)
    assert again.tracking_numbers == first.tracking_numbers
    assert len(fake_fan.requests_to("/intern-awb")) == 1 and len(fake_fan.awbs) == 1


def test_an_ambiguous_create_that_left_no_awb_stays_ambiguous_and_is_not_resent(fake_fan):
    fake_fan.fail_next(503, path="/intern-awb")  # refused before acting, but the client cannot know that
    with pytest.raises(AmbiguousOutcome):
        fan(fake_fan).create_shipment(ro_request("CMD-10"))
    assert len(fake_fan.requests_to("/intern-awb")) == 1 and fake_fan.awbs == {}


def test_a_rate_limited_create_waits_as_told_and_buys_one_awb(fake_fan):
    sleeps = Sleeps()
    fake_fan.fail_next(429, path="/intern-awb", headers={"Retry-After": "2"})
    fan(fake_fan, sleep=sleeps).create_shipment(ro_request())
    assert sleeps == [2.0] and len(fake_fan.awbs) == 1


def test_a_rate_limit_that_does_not_lift_is_reported_with_its_wait(fake_fan):
    fake_fan.fail_next(429, path="/reports/awb/tracking", headers={"Retry-After": "7"}, times=10)
    with pytest.raises(RateLimited) as limited:
        fan(fake_fan, retry=RetryPolicy(attempts=3)).track(["2332300120218"])
    assert limited.value.retry_after == 7.0 and len(fake_fan.requests_to("/reports/awb/tracking")) == 3


def test_server_errors_on_reads_are_retried(fake_fan):
    fake_fan.fail_next(503, path="/reports/pickup-points", times=2)
    assert len(fan(fake_fan).pickup_points()) == 1


# --- labels ----------------------------------------------------------------------------------------------------

def test_labels_for_many_awbs_come_in_one_call_one_a6_page_each(fake_fan):
    courier = fan(fake_fan)
    awbs = [courier.create_shipment(ro_request(f"CMD-{n}")).tracking_numbers[0] for n in range(3)]
    document = courier.label(awbs, "pdf", "a6")
    [call] = fake_fan.requests_to("/awb/label")
    assert call.query["awbs[]"] == awbs and call.query["pdf"] == ["1"] and call.query["format"] == ["A6"]
    pages = pdf_pages(document.content)
    assert len(pages) == 3 and approx_size(pages, A6) and document.size == "a6"


def test_ten_fan_labels_print_on_three_a4_sheets(fake_fan):
    courier = fan(fake_fan)
    results = [courier.create_shipment(ro_request(f"CMD-{n}")) for n in range(10)]
    document = courier.label(results, "pdf", "a4_4up")
    pages = pdf_pages(document.content)
    assert len(pages) == 3 and approx_size(pages, A4) and document.size == "a4_4up"


def test_zpl_labels_ask_fan_for_zpl_at_the_printers_resolution(fake_fan):
    courier = fan(fake_fan, zpl_dpi=300)
    awbs = [courier.create_shipment(ro_request(f"CMD-{n}")).tracking_numbers[0] for n in range(2)]
    document = courier.label(awbs, "zpl", "100x150")
    call = fake_fan.requests_to("/awb/label")[0]
    assert call.query["zpl"] == ["1"] and call.query["dpi"] == ["300"] and "pdf" not in call.query
    assert document.format == "zpl" and document.content.count(b"^XA") == 2


# --- tracking --------------------------------------------------------------------------------------------------

def test_tracking_reads_many_awbs_in_one_call_and_keeps_fans_codes_and_texts(fake_fan):
    courier = fan(fake_fan)
    delivered, fresh = (courier.create_shipment(ro_request(f"CMD-{n}")).tracking_numbers[0] for n in range(2))
    fake_fan.add_events(delivered, [("C0", "Expeditie ridicata", "Bucuresti", "2025-08-04 14:20:00"),
                                    ("H0", "Expeditie in tranzit spre depozitul de destinatie", "Bucuresti",
                                     "2025-08-04 20:00:00"),
                                    ("S1", "Expeditie in livrare", "Iasi", "2025-08-05 09:10:00"),
                                    ("S2", "Livrat", "Iasi", "2025-08-05 14:00:00")])
    by_number = {r.tracking_number: r for r in courier.track([delivered, fresh])}
    assert len(fake_fan.requests_to("/reports/awb/tracking")) == 1
    result = by_number[delivered]
    assert result.status is ShipmentStatus.DELIVERED
    assert [e.status for e in result.events] == [ShipmentStatus.PICKED_UP, ShipmentStatus.IN_TRANSIT,
                                                 ShipmentStatus.OUT_FOR_DELIVERY, ShipmentStatus.DELIVERED]
    assert result.events[0].raw_code == "C0" and result.events[0].raw_text == "Expeditie ridicata"
    assert result.events[-1].occurred_at == dt.datetime(2025, 8, 5, 11, 0, tzinfo=UTC)  # 14:00 in Bucharest
    assert result.delivered_at == result.events[-1].occurred_at
    assert by_number[fresh].status is ShipmentStatus.CREATED and by_number[fresh].events == ()


def test_a_return_awb_makes_the_parcel_returning(fake_fan):
    courier = fan(fake_fan)
    awb = courier.create_shipment(ro_request()).tracking_numbers[0]
    fake_fan.add_events(awb, [("C0", "Expeditie ridicata", "Bucuresti", "2025-08-04 14:20:00"),
                              ("S6", "Refuz primire", "Iasi", "2025-08-05 10:00:00")])
    fake_fan.set_return(awb, "7000081306999")
    [result] = courier.track([awb])
    assert result.status is ShipmentStatus.RETURNING and result.return_tracking_number == "7000081306999"
    assert result.events[-1].status is ShipmentStatus.FAILED_ATTEMPT


def test_an_event_code_nobody_mapped_is_unknown_never_in_transit(fake_fan):
    courier = fan(fake_fan)
    awb = courier.create_shipment(ro_request()).tracking_numbers[0]
    fake_fan.add_events(awb, [("Z99", "Eveniment nou", "Cluj", "2025-08-04 14:20:00")])
    [result] = courier.track([awb])
    assert result.status is ShipmentStatus.UNKNOWN
    assert (result.events[0].raw_code, result.events[0].raw_text) == ("Z99", "Eveniment nou")


# --- cancel and points ------------------------------------------------------------------------------------------

def test_an_unscanned_awb_is_cancelled_but_a_picked_up_one_is_not(fake_fan):
    courier = fan(fake_fan)
    first, second = (courier.create_shipment(ro_request(f"CMD-{n}")) for n in range(2))
    fake_fan.add_events(second.tracking_numbers[0], [("C0", "Expeditie ridicata", "Bucuresti", "2025-08-04 14:20:00")])
    assert courier.cancel(first) is True and courier.cancel(second) is False
    assert fake_fan.requests_to("/awb", "DELETE")[0].query["awb"] == [first.tracking_numbers[0]]


def test_fanbox_lockers_are_listed_as_pickup_points(fake_fan):
    [point] = fan(fake_fan).pickup_points()
    assert point.id == "F1011137" and point.kind == "locker" and point.address.city == "Bucuresti"
    assert point.latitude == Decimal("44.384394")
    assert fake_fan.requests_to("/reports/pickup-points")[0].query["type"] == ["fanbox"]


# --- batches and the registry ------------------------------------------------------------------------------------

def test_a_batch_reports_each_order_on_its_own_and_one_refusal_stops_nothing(fake_fan):
    bad = ro_request().recipient.__class__(name="Ana Pop", street="Str. Lunga 1", city="Cluj", postcode="4000",
                                           region="Cluj", country="RO")
    requests_ = [ro_request(f"CMD-{n}", **({"recipient": bad} if n == 2 else {})) for n in range(5)]
    outcomes = fan(fake_fan).create_shipments(requests_)
    assert [type(o).__name__ for o in outcomes] == ["ShipmentResult"] * 2 + ["CourierRefused"] + ["ShipmentResult"] * 2
    assert len(fake_fan.awbs) == 4
    assert len(fake_fan.requests_to("/intern-awb", "POST")) == 1  # FAN takes the five in one call
    assert [o.reference for o in outcomes if not isinstance(o, Exception)] == ["CMD-0", "CMD-1", "CMD-3", "CMD-4"]


def test_a_batch_whose_answer_was_lost_is_found_in_the_awb_report_without_buying_again(fake_fan):
    fake_fan.fail_next(504, path="/intern-awb", after=True)

    outcomes = fan(fake_fan).create_shipments([ro_request(f"CMD-{n}") for n in range(3)])

    assert [o.tracking_numbers[0] for o in outcomes] == sorted(fake_fan.awbs)
    assert len(fake_fan.requests_to("/reports/awb")) == 1  # one report read answers all three


def test_a_refused_login_answers_every_request_of_the_batch_and_buys_nothing(fake_fan):
    courier = FanCourier(fake_fan.client_id, fake_fan.username, "wrong", base_url=fake_fan.url, tokens=TokenCache(),
                         sleep=Sleeps())

    outcomes = courier.create_shipments([ro_request(f"CMD-{n}") for n in range(120)])

    assert len(outcomes) == 120 and all(isinstance(o, AuthError) for o in outcomes) and fake_fan.awbs == {}


def test_couriers_are_made_from_their_registry_name_and_declare_what_they_can_do(fake_fan):
    from connectors.couriers import Capability, make

    courier = make("fancourier", client_id=fake_fan.client_id, username=fake_fan.username,
                   password=fake_fan.password, base_url=fake_fan.url, tokens=TokenCache())
    assert isinstance(courier, FanCourier) and courier.can("label_zpl") and courier.can(Capability.BULK_TRACKING)
    assert not courier.can(Capability.CHANGE_FEED) and fake_fan.password not in repr(courier)
