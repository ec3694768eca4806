"""The Twilio notifier against a loopback Twilio API, plus phone numbers and SMS segment arithmetic."""
from __future__ import annotations

import pytest

from app.notifiers.base import ACCEPTED, FAILED_PERMANENTLY, RETRY_LATER, Envelope
from app.notifiers.sms import (InvalidPhoneNumber, SmsNotifier, TwilioAccount, count_segments, to_e164,
                               transliterate)
from tests.messaging_fakes import FakeTwilio, free_port


@pytest.fixture
def twilio():
    fake = FakeTwilio().start()
    yield fake
    fake.stop()


def _notifier(base_url: str, **account) -> SmsNotifier:
    return SmsNotifier(TwilioAccount(account_sid="AC" + "1" * 32, auth_token="secret-token", api_base_url=base_url,
                                     timeout=5, **({"messaging_service_sid": "MG" + "2" * 32} | account)))


def _envelope(to: str = "+48600111222") -> Envelope:
    return Envelope(channel="sms", recipient=to, idempotency_key="k", text="Paczka w drodze",
                    payload={"status_callback": "https://companion.example/m/twilio/status/1"})


def test_an_accepted_sms_returns_twilios_message_sid(twilio):
    outcome = _notifier(twilio.base_url).send(_envelope())
    assert outcome.status == ACCEPTED and outcome.provider_message_id.startswith("SM")
    (request,) = twilio.requests
    assert request["path"] == f"/2010-04-01/Accounts/AC{'1' * 32}/Messages.json"
    assert request["form"]["MessagingServiceSid"] == "MG" + "2" * 32
    assert request["form"]["StatusCallback"] == "https://companion.example/m/twilio/status/1"
    assert request["form"]["Body"] == "Paczka w drodze" and request["auth"].startswith("Basic ")


def test_a_shop_sender_number_is_used_when_there_is_no_messaging_service(twilio):
    _notifier(twilio.base_url, messaging_service_sid=None, from_number="+48500000000").send(_envelope())
    assert twilio.requests[0]["form"]["From"] == "+48500000000"
    assert "MessagingServiceSid" not in twilio.requests[0]["form"]


def test_an_opted_out_recipient_fails_permanently_and_is_suppressed(twilio):
    twilio.errors["+48600000610"] = (400, {"code": 21610, "message": "Attempt to send to unsubscribed recipient",
                                           "status": 400}, {})
    outcome = _notifier(twilio.base_url).send(_envelope("+48600000610"))
    assert outcome.status == FAILED_PERMANENTLY and outcome.suppress and "21610" in outcome.detail


def test_too_many_requests_is_retried_after_twilios_retry_after(twilio):
    twilio.errors["+48600000429"] = (429, {"code": 20429, "message": "Too Many Requests", "status": 429},
                                     {"Retry-After": "17"})
    outcome = _notifier(twilio.base_url).send(_envelope("+48600000429"))
    assert outcome.status == RETRY_LATER and outcome.retry_after == 17


def test_an_unreachable_twilio_is_retried_later():
    outcome = _notifier(f"http://127.0.0.1:{free_port()}").send(_envelope())
    assert outcome.status == RETRY_LATER


@pytest.mark.parametrize("raw, region, expected", [
    ("600 111 222", "PL", "+48600111222"),
    ("0722 123 456", "RO", "+40722123456"),
    ("+40 722 123 456", "PL", "+40722123456"),
])
def test_numbers_are_normalised_to_e164_in_the_shops_region(raw, region, expected):
    assert to_e164(raw, region) == expected


def test_a_number_that_is_not_valid_is_refused():
    with pytest.raises(InvalidPhoneNumber):
        to_e164("12", "PL")


def test_plain_text_costs_gsm7_segments_of_160_then_153():
    assert (count_segments("a" * 160).encoding, count_segments("a" * 160).segments) == ("GSM-7", 1)
    assert count_segments("a" * 161).segments == 2 and count_segments("a" * 306).segments == 2


def test_polish_diacritics_switch_to_ucs2_segments_of_70_then_67():
    text = "Zażółć gęślą jaźń " * 4  # 72 characters
    assert count_segments(text).encoding == "UCS-2" and count_segments(text).segments == 2


def test_transliteration_brings_polish_and_romanian_text_back_to_gsm7():
    text = transliterate("Zamówienie gotowe. Comanda ta a fost expediată, științe, Łódź")
    assert text == "Zamowienie gotowe. Comanda ta a fost expediata, stiinte, Lodz"
    assert count_segments(text).encoding == "GSM-7"


def test_extended_gsm_characters_cost_two_septets():
    assert count_segments("€" * 80).units == 160 and count_segments("€" * 80).segments == 1
