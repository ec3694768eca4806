"""The pure parts of automations: the abandonment verdict, flow validation, conditions, and wait times across DST."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from app.automations.definitions import evaluate, validate_definition
from app.automations.detection import CartFacts, abandon_after, abandonment_verdict, other_sender
from app.automations.flows import library
from app.automations.timing import wait_until

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)


def facts(**overrides) -> CartFacts:
    values = dict(last_activity_at=NOW - 2 * HOUR, has_contact=True, has_lines=True, converting_order_id=None,
                  shop_active=True, other_sender=None)
    return CartFacts(**{**values, **overrides})


def test_an_idle_reachable_unbought_cart_is_abandoned():
    assert abandonment_verdict(facts(), NOW, HOUR) == "abandoned"


def test_a_cart_bought_by_the_same_email_since_is_converted_not_abandoned():
    assert abandonment_verdict(facts(converting_order_id=7), NOW, HOUR) == "converted"


def test_a_cart_another_sender_handles_is_not_ours_unless_the_owner_chose_us():
    assert other_sender({"abandoned_cart_senders": ["woocommerce_core"]}) == "woocommerce_core"
    assert other_sender({"abandoned_cart_senders": ["woocommerce_core"], "abandoned_cart_owner": "companion"}) is None
    assert abandonment_verdict(facts(other_sender="shopify_native"), NOW, HOUR) == "other_sender"


def test_the_threshold_defaults_to_60_minutes_and_never_drops_under_10():
    assert abandon_after({}) == dt.timedelta(minutes=60)
    assert abandon_after({"abandoned_cart_minutes": 3}) == dt.timedelta(minutes=10)
    assert abandon_after({"abandoned_cart_minutes": 240}) == dt.timedelta(hours=4)


def test_every_ready_flow_in_the_library_is_valid():
    for key, template in library().items():
        definition = {k: v for k, v in template.items() if k not in ("name", "description")}
        assert validate_definition(definition) == [], key


def test_validation_names_each_problem():
    problems = validate_definition({"trigger": "cart_abandoned", "steps": [
        {"id": "a", "type": "send", "channel": "fax", "kind": "recovery", "template": "x"},
        {"id": "b", "type": "coupon", "percent_off": 150},
        {"id": "c", "type": "condition", "if": {"field": "cart.total", "op": "gt", "value": 1}, "then": "zzz"}]})
    assert any("channel" in p for p in problems)
    assert any("percent_off" in p for p in problems)
    assert any("unknown step 'zzz'" in p for p in problems)


def test_a_flow_that_loops_back_is_refused():
    problems = validate_definition({"trigger": "order_paid", "steps": [
        {"id": "a", "type": "tag", "add": "x"}, {"id": "b", "type": "tag", "add": "y", "next": "a"}]})
    assert problems == ["steps loop back on themselves; a flow must move forward"]


def test_conditions_compare_money_as_decimals_and_tags_as_a_set():
    condition = {"all": [{"field": "cart.total", "op": "gte", "value": "200"},
                         {"field": "customer.tags", "op": "eq", "value": "vip"}]}
    assert evaluate(condition, {"cart.total": Decimal("229.90"), "customer.tags": ["vip", "b2b"]})
    assert not evaluate(condition, {"cart.total": Decimal("199.99"), "customer.tags": ["vip"]})
    assert not evaluate(condition, {"customer.tags": ["vip"]}), "a missing fact is false, never an error"


def test_a_wait_until_morning_in_spring_skips_the_missing_hour():
    night = dt.datetime(2026, 3, 28, 23, 30, tzinfo=dt.timezone.utc)  # 00:30 on 29 March in Warsaw, winter time
    due = wait_until({"until": "02:30"}, night, "Europe/Warsaw")  # 02:30 does not exist that night
    assert due == dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.timezone.utc), "03:30 summer time, the same instant"


def test_a_duration_wait_is_absolute_time_even_across_dst():
    before = dt.datetime(2026, 10, 24, 12, 0, tzinfo=dt.timezone.utc)
    assert wait_until({"hours": 24}, before, "Europe/Bucharest") == before + dt.timedelta(hours=24)


def test_a_wait_of_days_until_a_time_is_that_many_calendar_days_later_on_the_shop_clock():
    due = wait_until({"days": 1, "until": "10:00"}, NOW, "Europe/Bucharest")  # 14:00 in Bucharest now
    assert due == dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.timezone.utc), "10:00 tomorrow, Bucharest winter time"


def test_a_wait_until_a_time_already_past_today_is_tomorrow():
    due = wait_until({"until": "09:00"}, NOW, "Europe/Warsaw")
    assert due == dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.timezone.utc)
