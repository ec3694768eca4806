"""The gates as pure decisions: consent, suppression, quiet hours across DST changes, the frequency cap by priority."""
from __future__ import annotations

import datetime as dt

from app.messaging import gates

UTC = dt.timezone.utc


def _utc(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def test_marketing_without_consent_is_blocked_as_suppressed():
    verdict = gates.consent_gate("recovery", "email", None)
    assert (verdict.result, verdict.status) == ("block", "suppressed")


def test_marketing_after_consent_was_revoked_is_blocked():
    assert gates.consent_gate("promotional", "sms", "revoked").result == "block"


def test_marketing_with_granted_consent_passes():
    assert gates.consent_gate("recovery", "email", "granted").result == "pass"


def test_a_shipping_update_needs_no_marketing_consent():
    assert gates.consent_gate("shipping", "sms", "revoked").result == "pass"


def test_push_to_an_inactive_subscription_is_blocked_whatever_the_kind():
    assert gates.consent_gate("transactional", "push", None, push_subscription_active=False).result == "block"


def test_a_suppressed_address_is_blocked():
    verdict = gates.suppression_gate("hard_bounce")
    assert (verdict.result, verdict.status) == ("block", "suppressed") and "hard_bounce" in verdict.detail


def test_a_met_exit_condition_cancels():
    verdict = gates.exit_gate(["cart 5 was bought meanwhile (converted)"])
    assert (verdict.result, verdict.status) == ("block", "cancelled")


def test_quiet_hours_defer_to_the_local_morning():
    # 23:30 in Bucharest (UTC+2 in January) -> 08:00 local = 06:00 UTC next day
    verdict = gates.quiet_hours_gate("recovery", _utc(2026, 1, 14, 21, 30), "Europe/Bucharest", ("21:00", "08:00"))
    assert verdict.result == "defer" and verdict.until == _utc(2026, 1, 15, 6, 0)


def test_early_morning_is_still_quiet_until_the_same_days_end():
    until = gates.quiet_until(_utc(2026, 1, 15, 4, 0), "Europe/Warsaw", "21:00", "08:00")  # 05:00 local
    assert until == _utc(2026, 1, 15, 7, 0)


def test_daytime_is_outside_quiet_hours():
    assert gates.quiet_hours_gate("promotional", _utc(2026, 1, 15, 11, 0), "Europe/Warsaw", ("21:00", "08:00")).result == "pass"


def test_quiet_hours_end_at_local_eight_on_the_night_summer_time_begins():
    # 22:00 CET on 28 March 2026; clocks jump 02:00 -> 03:00; 08:00 CEST is 06:00 UTC (not 07:00)
    until = gates.quiet_until(_utc(2026, 3, 28, 21, 0), "Europe/Warsaw", "21:00", "08:00")
    assert until == _utc(2026, 3, 29, 6, 0)


def test_quiet_hours_end_at_local_eight_on_the_night_summer_time_ends():
    # 22:00 CEST on 24 October 2026; clocks fall back 03:00 -> 02:00; 08:00 CET is 07:00 UTC
    until = gates.quiet_until(_utc(2026, 10, 24, 20, 0), "Europe/Bucharest", "22:00", "08:00")
    assert until == _utc(2026, 10, 25, 6, 0)


def test_transactional_messages_ignore_quiet_hours():
    assert gates.quiet_hours_gate("transactional", _utc(2026, 1, 15, 1, 0), "Europe/Warsaw", ("21:00", "08:00")).result == "pass"


def test_a_full_cap_defers_until_the_oldest_send_leaves_the_window():
    now = _utc(2026, 5, 1, 12, 0)
    sends = [now - dt.timedelta(hours=20), now - dt.timedelta(hours=3)]
    verdict = gates.frequency_cap_gate("recovery", now, sends, 0, (2, 24))
    assert verdict.result == "defer" and verdict.until == now + dt.timedelta(hours=4)


def test_a_lower_priority_message_yields_to_a_higher_priority_one_due_now():
    now = _utc(2026, 5, 1, 12, 0)
    verdict = gates.frequency_cap_gate("promotional", now, [], 1, (1, 24))
    assert verdict.result == "defer" and verdict.until > now and "higher-priority" in verdict.detail


def test_under_the_cap_passes():
    now = _utc(2026, 5, 1, 12, 0)
    assert gates.frequency_cap_gate("recovery", now, [now - dt.timedelta(hours=30)], 0, (1, 24)).result == "pass"


def test_transactional_messages_are_never_capped():
    now = _utc(2026, 5, 1, 12, 0)
    assert gates.frequency_cap_gate("transactional", now, [now] * 9, 3, (1, 24)).result == "pass"
