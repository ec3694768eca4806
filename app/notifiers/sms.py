"""SMS through Twilio: E.164 numbers, GSM-7 or UCS-2 segment counts, and provider errors classified."""
from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field

import phonenumbers
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import NameResolutionError, NewConnectionError

from app.notifiers.base import Envelope, SendOutcome, parse_retry_after

log = logging.getLogger(__name__)

TWILIO_API_ORIGIN = "https://api.twilio.com"
OPTED_OUT = 21610  # "Attempt to send to unsubscribed recipient"
# Errors that say the number itself is unusable: keep no retry and no further sends to it.
UNREACHABLE_NUMBER_ERRORS = {21211, 21612, 21614, 21408}

# GSM 03.38 basic set, and the extension table whose characters cost two septets each.
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = set("^{}\\[~]|€\f")

DIACRITICS = str.maketrans({
    "ą": "a", "ć": "c", "ę": "e", "ł": "l", "ń": "n", "ó": "o", "ś": "s", "ź": "z", "ż": "z",
    "Ą": "A", "Ć": "C", "Ę": "E", "Ł": "L", "Ń": "N", "Ó": "O", "Ś": "S", "Ź": "Z", "Ż": "Z",
    "ă": "a", "â": "a", "î": "i", "ș": "s", "ş": "s", "ț": "t", "ţ": "t",
    "Ă": "A", "Â": "A", "Î": "I", "Ș": "S", "Ş": "S", "Ț": "T", "Ţ": "T",
    "„": '"', "”": '"', "“": '"', "’": "'", "‘": "'", "–": "-", "—": "-", "…": "...",
})


class InvalidPhoneNumber(ValueError):
    pass


def to_e164(raw: str, default_region: str) -> str:
    """A phone number as E.164, reading national numbers in the shop's country (PL, RO)."""
    try:
        number = phonenumbers.parse(raw, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def transliterate(text: str) -> str:
    """Polish and Romanian letters (and typographic quotes) as their GSM-7 plain forms."""
    return text.translate(DIACRITICS)


@dataclass(frozen=True)
class SegmentCount:
    encoding: str  # "GSM-7" | "UCS-2"
    units: int  # septets for GSM-7, UTF-16 code units for UCS-2
    segments: int


def count_segments(text: str) -> SegmentCount:
    """How many SMS parts a text costs: 160/153 septets in GSM-7, 70/67 UTF-16 units in UCS-2."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENDED for ch in text):
        units = sum(2 if ch in GSM7_EXTENDED else 1 for ch in text)
        single, multi, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi, encoding = 70, 67, "UCS-2"
    segments = 0 if units == 0 else 1 if units <= single else math.ceil(units / multi)
    return SegmentCount(encoding, units, segments)


def never_connected(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the server (refused, unresolvable, connect timeout)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, (NewConnectionError, NameResolutionError)) or isinstance(exc.args[0] if exc.args else None,
                                                                                     (NewConnectionError, NameResolutionError))


class RedirectableHttpClient(TwilioHttpClient):
    """Twilio's own HTTP client (a pooled requests.Session), optionally sending to another origin.

    The SDK has no base-URL setting (edge/region only rename twilio.com hosts); tests and a local
    fake use `api_base_url`. It also keeps the last response per thread so 429's Retry-After can be read.
    """

    def __init__(self, *, timeout: float, api_base_url: str | None = None):
        super().__init__(pool_connections=True, timeout=timeout)
        self.api_base_url = (api_base_url or "").rstrip("/") or None
        self._local = threading.local()

    def request(self, method, url, *args, **kwargs):
        if self.api_base_url and url.startswith("https://") and ".twilio.com" in url.split("/", 3)[2]:
            url = self.api_base_url + "/" + url.split("/", 3)[3]
        response = super().request(method, url, *args, **kwargs)
        self._local.last_headers = dict(response.headers or {})
        return response

    def last_header(self, name: str) -> str | None:
        headers = getattr(self._local, "last_headers", {}) or {}
        for key, value in headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass(frozen=True)
class TwilioAccount:
    account_sid: str
    auth_token: str = field(repr=False)
    messaging_service_sid: str | None = None
    from_number: str | None = None
    api_base_url: str | None = None
    timeout: float = 10.0


class SmsNotifier:
    """Sends through one Twilio account, from a shop's Messaging Service or sender."""

    channel = "sms"
    provider = "twilio"

    def __init__(self, account: TwilioAccount):
        if not (account.messaging_service_sid or account.from_number):
            raise ValueError("a Messaging Service SID or a sender number is required")
        self.account = account
        self.http = RedirectableHttpClient(timeout=account.timeout, api_base_url=account.api_base_url)
        self.client = Client(account.account_sid, account.auth_token, http_client=self.http)

    def send(self, envelope: Envelope) -> SendOutcome:
        params = {"to": envelope.recipient, "body": envelope.text}
        if self.account.messaging_service_sid:
            params["messaging_service_sid"] = self.account.messaging_service_sid
        else:
            params["from_"] = self.account.from_number
        callback = envelope.payload.get("status_callback")
        if callback:
            params["status_callback"] = callback
        try:
            created = self.client.messages.create(**params)
        except TwilioRestException as exc:
            return self._classify(exc)
        except requests.RequestException as exc:
            if never_connected(exc):
                return SendOutcome.retry(60, f"cannot reach Twilio: {exc}")
            return SendOutcome.unknown(f"Twilio request broke off after it was sent: {exc}")
        return SendOutcome.accepted(created.sid, f"status {created.status}")

    def _classify(self, exc: TwilioRestException) -> SendOutcome:
        detail = f"Twilio {exc.status} error {exc.code}: {exc.msg}"[:500]
        if exc.code == OPTED_OUT:
            return SendOutcome.failed(detail, suppress=True)
        if exc.status == 429:
            return SendOutcome.retry(parse_retry_after(self.http.last_header("Retry-After")), detail)
        if exc.status >= 500:
            return SendOutcome.retry(60, detail)
        return SendOutcome.failed(detail, suppress=exc.code in UNREACHABLE_NUMBER_ERRORS)

    def close(self) -> None:
        if self.http.session is not None:
            self.http.session.close()
