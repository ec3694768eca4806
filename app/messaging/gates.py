"""The checks a message passes right before it leaves; each a pure function returning a verdict for the trace."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

KINDS = ("transactional", "shipping", "recovery", "promotional")
PRIORITY = {"transactional": 0, "shipping": 1, "recovery": 2, "promotional": 3}  # lower number goes first
MARKETING_KINDS = ("recovery", "promotional")

PASS, BLOCK, DEFER = "pass", "block", "defer"

DEFAULT_QUIET_HOURS = ("21:00", "08:00")
DEFAULT_CAPS = {"email": (2, 24), "sms": (1, 24), "push": (2, 24)}  # (messages, hours) per recipient
YIELD_DELAY = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class Verdict:
    gate: str
    result: str  # pass | block | defer
    detail: str
    until: dt.datetime | None = None  # for defer: when to try again
    status: str | None = None  # for block: the message's final status (suppressed | cancelled)

    def trace(self, now: dt.datetime) -> dict:
        entry = {"gate": self.gate, "verdict": self.result, "detail": self.detail, "at": now.isoformat()}
        if self.until is not None:
            entry["until"] = self.until.isoformat()
        return entry


def exit_gate(reasons: list[str]) -> Verdict:
    if reasons:
        return Verdict("exit_conditions", BLOCK, "; ".join(reasons), status="cancelled")
    return Verdict("exit_conditions", PASS, "no exit condition met")


def consent_gate(kind: str, channel: str, consent_state: str | None, *, push_subscription_active: bool | None = None) -> Verdict:
    """Marketing needs the customer's current consent for this channel; transactional and shipping do not.

    For push, the live subscription is the permission: a removed one stops every kind.
    """
    if channel == "push" and not push_subscription_active:
        return Verdict("consent", BLOCK, "push subscription no longer active", status="suppressed")
    if kind not in MARKETING_KINDS:
        return Verdict("consent", PASS, f"{kind} message: consent not required")
    if channel == "push":
        return Verdict("consent", PASS, "push subscription granted by the visitor")
    if consent_state == "granted":
        return Verdict("consent", PASS, f"{channel} consent granted")
    return Verdict("consent", BLOCK, f"no {channel} marketing consent (current state: {consent_state or 'none'})",
                   status="suppressed")


def preference_gate(kind: str, channel: str, wanted: bool | None) -> Verdict:
    """The customer's own choice for this kind of message on this channel (the preferences page).

    Transactional messages (an order confirmation, a password reset) cannot be switched off.
    """
    if kind == "transactional":
        return Verdict("preference", PASS, "transactional message: not a matter of preference")
    if wanted is False:
        return Verdict("preference", BLOCK, f"the customer switched off {kind} messages by {channel}",
                       status="suppressed")
    return Verdict("preference", PASS, f"{kind} messages by {channel} not switched off")


def suppression_gate(reason: str | None) -> Verdict:
    if reason:
        return Verdict("suppression", BLOCK, f"address suppressed: {reason}", status="suppressed")
    return Verdict("suppression", PASS, "address not suppressed")


def _clock(value: str) -> dt.time:
    hours, minutes = value.split(":")
    return dt.time(int(hours), int(minutes))


def quiet_until(now: dt.datetime, timezone: str, start: str, end: str) -> dt.datetime | None:
    """When the quiet window around `now` ends (UTC), or None when `now` is outside it.

    The end is taken on the local wall clock of `timezone`, so "08:00" stays 08:00 across a DST change.
    """
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    start_t, end_t = _clock(start), _clock(end)
    if start_t == end_t:
        return None
    t = local.time().replace(tzinfo=None)
    if start_t < end_t:  # quiet within one day, e.g. 13:00-15:00
        if not (start_t <= t < end_t):
            return None
        end_date = local.date()
    else:  # across midnight, e.g. 21:00-08:00
        if end_t <= t < start_t:
            return None
        end_date = local.date() + dt.timedelta(days=1) if t >= start_t else local.date()
    wake = dt.datetime.combine(end_date, end_t, tzinfo=zone)
    return wake.astimezone(dt.timezone.utc)


def quiet_hours_gate(kind: str, now: dt.datetime, timezone: str, window: tuple[str, str] | None) -> Verdict:
    if kind == "transactional":
        return Verdict("quiet_hours", PASS, "transactional message: quiet hours do not apply")
    if not window:
        return Verdict("quiet_hours", PASS, "no quiet hours set")
    until = quiet_until(now, timezone, *window)
    if until is None:
        return Verdict("quiet_hours", PASS, f"outside quiet hours {window[0]}-{window[1]} ({timezone})")
    return Verdict("quiet_hours", DEFER, f"quiet hours {window[0]}-{window[1]} ({timezone})", until=until)


def frequency_cap_gate(kind: str, now: dt.datetime, recent_sends: list[dt.datetime], higher_priority_due: int,
                       cap: tuple[int, float] | None) -> Verdict:
    """At most `cap[0]` capped messages per `cap[1]` hours; a message yields its place to higher-priority ones due now.

    Transactional messages are neither capped nor counted. A blocked message is deferred, never dropped.
    """
    if kind == "transactional":
        return Verdict("frequency_cap", PASS, "transactional message: not capped")
    if not cap:
        return Verdict("frequency_cap", PASS, "no frequency cap set")
    limit, hours = cap
    window = dt.timedelta(hours=hours)
    counted = sorted(t for t in recent_sends if t > now - window)
    if len(counted) >= limit:
        until = counted[len(counted) - limit] + window
        return Verdict("frequency_cap", DEFER, f"{len(counted)} of {limit} messages in {hours:g} h already sent",
                       until=until)
    if len(counted) + higher_priority_due >= limit:
        return Verdict("frequency_cap", DEFER,
                       f"yields to {higher_priority_due} higher-priority message(s) due now ({len(counted)} of {limit} sent)",
                       until=now + YIELD_DELAY)
    return Verdict("frequency_cap", PASS, f"{len(counted)} of {limit} messages in {hours:g} h")


def sms_budget_gate(kind: str, used_segments: int, segments: int, budget: int | None) -> Verdict:
    """A shop's monthly SMS allowance in segments; transactional messages are never held back by it."""
    if budget is None:
        return Verdict("sms_budget", PASS, f"{segments} segment(s); no monthly budget set")
    if kind == "transactional" or used_segments + segments <= budget:
        return Verdict("sms_budget", PASS, f"{segments} segment(s); {used_segments} of {budget} used this month")
    return Verdict("sms_budget", BLOCK, f"{segments} segment(s) would exceed the monthly budget "
                                        f"({used_segments} of {budget} used)", status="cancelled")
