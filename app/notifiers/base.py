"""What every channel's notifier takes (an envelope) and gives back (a send outcome)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

ACCEPTED = "accepted"
RETRY_LATER = "retry_later"
FAILED_PERMANENTLY = "failed_permanently"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Envelope:
    """One rendered message for one recipient, ready for a channel; no flow or shop logic left in it.

    `payload` holds what only one channel understands: for push the subscription, TTL, urgency and topic;
    for SMS the status callback URL.
    """

    channel: str
    recipient: str
    idempotency_key: str
    subject: str = ""
    text: str = ""
    html: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SendOutcome:
    """What a provider did with an envelope.

    `retry_later`: we know nothing left (refused connection, 4xx before DATA, 429, 5xx before acceptance).
    `unknown`: something may have left; never resent automatically.
    `suppress`: the address must not be used again on this channel (hard bounce, Twilio 21610).
    `subscription_gone`: a push subscription the push service no longer knows (404/410).
    """

    status: str
    provider_message_id: str | None = None
    detail: str = ""
    retry_after: float | None = None
    suppress: bool = False
    subscription_gone: bool = False

    @classmethod
    def accepted(cls, provider_message_id: str | None, detail: str = "") -> "SendOutcome":
        return cls(ACCEPTED, provider_message_id, detail)

    @classmethod
    def retry(cls, after: float, detail: str) -> "SendOutcome":
        return cls(RETRY_LATER, None, detail, retry_after=max(1.0, float(after)))

    @classmethod
    def failed(cls, detail: str, *, suppress: bool = False, subscription_gone: bool = False) -> "SendOutcome":
        return cls(FAILED_PERMANENTLY, None, detail, suppress=suppress, subscription_gone=subscription_gone)

    @classmethod
    def unknown(cls, detail: str) -> "SendOutcome":
        return cls(UNKNOWN, None, detail)


class Notifier(Protocol):
    """One channel's sender. Implementations never raise for provider trouble: they classify it."""

    channel: str
    provider: str

    def send(self, envelope: Envelope) -> SendOutcome: ...

    def close(self) -> None: ...


DEFAULT_RETRY_SECONDS = 60.0


def parse_retry_after(value: str | None, default: float = DEFAULT_RETRY_SECONDS) -> float:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime
    import datetime as dt

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(1.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())
