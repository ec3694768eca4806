"""Flow definitions as data: their vocabulary, a validator, and the condition language (pure functions)."""
from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from app.automations.signals import SIGNAL_KINDS

STEP_TYPES = ("wait", "condition", "send", "tag", "coupon", "webhook", "sunset")
MESSAGE_KINDS = ("transactional", "shipping", "recovery", "promotional")
CHANNELS = ("email", "sms", "push")
EXITS = ("purchased", "unsubscribed", "cart_emptied", "order_paid", "order_cancelled")
REENTRY = ("skip", "restart", "parallel")  # parallel: every signal starts its own run
OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in", "exists")
FIELDS = (
    "customer.orders_count", "customer.total_spent", "customer.locale", "customer.has_email", "customer.has_phone",
    "customer.tags", "customer.segments", "cart.total", "cart.currency", "cart.status", "cart.lines_count",
    "order.total", "order.status",
    "order.financial_status", "order.payment_method", "order.is_paid", "last_message.opened", "last_message.clicked",
    "last_message.status", "run.custom_events",
)
_SIGNAL_FIELD = re.compile(r"^signal\.[a-z_]{1,40}$")
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_STEP_ID = re.compile(r"^[a-z0-9_\-]{1,40}$")
END_TARGETS = ("exit", "next")


def validate_definition(definition: Any) -> list[str]:
    """Every problem with a flow definition, as sentences for the shop owner; empty when it is valid."""
    if not isinstance(definition, dict):
        return ["the definition must be a JSON object"]
    problems: list[str] = []
    if definition.get("trigger") not in SIGNAL_KINDS:
        problems.append(f"trigger must be one of {', '.join(SIGNAL_KINDS)}")
    elif definition["trigger"] in ("segment_entered", "segment_left") and not isinstance(definition.get("segment"),
                                                                                          (str, int)):
        problems.append("a segment_entered or segment_left trigger needs segment: the segment's name or id")
    if definition.get("audience") is not None:
        problems += [f"audience: {p}" for p in validate_condition(definition["audience"])]
    exits = definition.get("exit", [])
    if not isinstance(exits, list) or any(e not in EXITS for e in exits):
        problems.append(f"exit must be a list of {', '.join(EXITS)}")
    if definition.get("reentry", "skip") not in REENTRY:
        problems.append(f"reentry must be one of {', '.join(REENTRY)}")
    steps = definition.get("steps")
    if not isinstance(steps, list) or not steps:
        return problems + ["steps must be a non-empty list"]
    ids = [step.get("id") if isinstance(step, dict) else None for step in steps]
    for index, step in enumerate(steps):
        where = f"step {index + 1}"
        if not isinstance(step, dict):
            problems.append(f"{where} must be an object")
            continue
        if not isinstance(step.get("id"), str) or not _STEP_ID.match(step["id"]):
            problems.append(f"{where}: id must be 1-40 characters of a-z, 0-9, _ or -")
        elif ids.count(step["id"]) > 1:
            problems.append(f"{where}: id {step['id']!r} is used twice")
        problems += [f"{where} ({step.get('id')}): {p}" for p in _validate_step(step, ids)]
    if not problems and _has_cycle(steps):
        problems.append("steps loop back on themselves; a flow must move forward")
    return problems


def _validate_step(step: dict, ids: list) -> list[str]:
    kind = step.get("type")
    problems: list[str] = []
    if kind not in STEP_TYPES:
        return [f"type must be one of {', '.join(STEP_TYPES)}"]
    for key in ("next", "then", "else"):
        target = step.get(key)
        if target is not None and target not in ids and target not in END_TARGETS:
            problems.append(f"{key} points at unknown step {target!r}")
    if kind == "wait":
        amounts = [step.get(k, 0) for k in ("days", "hours", "minutes")]
        if any(not isinstance(a, (int, float)) or a < 0 for a in amounts):
            problems.append("days, hours and minutes must be numbers of at least 0")
        if step.get("until") is not None and not _TIME.match(str(step["until"])):
            problems.append("until must be a time of day HH:MM")
        if not any(amounts) and not step.get("until"):
            problems.append("a wait needs a duration or an until time")
    elif kind == "condition":
        problems += validate_condition(step.get("if"))
        if step.get("then") is None and step.get("else") is None:
            problems.append("a condition needs then or else")
    elif kind == "send":
        if step.get("channel") not in CHANNELS:
            problems.append(f"channel must be one of {', '.join(CHANNELS)}")
        if step.get("kind") not in MESSAGE_KINDS:
            problems.append(f"kind must be one of {', '.join(MESSAGE_KINDS)}")
        if not isinstance(step.get("template"), str) or not step["template"]:
            problems.append("template must name a template")
        if not isinstance(step.get("payment_link", False), bool):
            problems.append("payment_link must be true or false (true: carry the order's fresh payment link)")
    elif kind == "tag":
        if not (isinstance(step.get("add"), str) or isinstance(step.get("remove"), str)):
            problems.append("a tag step needs add or remove with a tag name")
        for key in ("add", "remove"):
            if isinstance(step.get(key), str) and not 1 <= len(" ".join(step[key].split())) <= 128:
                problems.append(f"{key} must be a tag name of 1 to 128 characters")
    elif kind == "coupon":
        percent, amount = step.get("percent_off"), step.get("amount_off")
        if (percent is None) == (amount is None):
            problems.append("a coupon needs exactly one of percent_off or amount_off")
        elif percent is not None and not 0 < _decimal(percent, Decimal(0)) <= 100:
            problems.append("percent_off must be above 0 and at most 100")
        elif amount is not None and _decimal(amount, Decimal(0)) <= 0:
            problems.append("amount_off must be above 0")
        hours = step.get("expires_hours", 48)
        if not isinstance(hours, (int, float)) or not 1 <= hours <= 24 * 30:
            problems.append("expires_hours must be between 1 and 720")
    elif kind == "webhook":
        if not str(step.get("url", "")).startswith("https://"):
            problems.append("url must be an https:// URL")
    elif kind == "sunset":
        if step.get("channel", "email") not in ("email", "sms"):
            problems.append("a sunset needs channel email or sms")
    return problems


def step_targets(steps: list[dict], index: int) -> list[int | None]:
    """Indexes a step can lead to (None = the run ends)."""
    by_id = {step.get("id"): i for i, step in enumerate(steps)}
    step = steps[index]

    def resolve(target):
        if target in (None, "next"):
            return index + 1 if index + 1 < len(steps) else None
        if target == "exit":
            return None
        return by_id.get(target)

    if step.get("type") == "condition":
        return [resolve(step.get("then")), resolve(step.get("else"))]
    return [resolve(step.get("next"))]


def _has_cycle(steps: list[dict]) -> bool:
    state: dict[int, int] = {}

    def visit(i: int) -> bool:
        state[i] = 1
        for target in step_targets(steps, i):
            if target is None:
                continue
            if state.get(target) == 1 or (state.get(target) is None and visit(target)):
                return True
        state[i] = 2
        return False

    return any(state.get(i) is None and visit(i) for i in range(len(steps)))


def validate_condition(condition: Any) -> list[str]:
    if not isinstance(condition, dict) or not condition:
        return ["a condition must be an object"]
    for combinator in ("all", "any"):
        if combinator in condition:
            parts = condition[combinator]
            if not isinstance(parts, list) or not parts:
                return [f"{combinator} must be a non-empty list"]
            return [p for part in parts for p in validate_condition(part)]
    if "not" in condition:
        return validate_condition(condition["not"])
    field, op = condition.get("field"), condition.get("op", "eq")
    problems = []
    if field not in FIELDS and not (isinstance(field, str) and _SIGNAL_FIELD.match(field)):
        problems.append(f"unknown field {field!r}")
    if op not in OPERATORS:
        problems.append(f"unknown operator {op!r}")
    if op in ("in", "not_in") and not isinstance(condition.get("value"), list):
        problems.append(f"{op} needs a list value")
    return problems


def _decimal(value: Any, default: Decimal | None = None) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return default


def evaluate(condition: dict, facts: Mapping[str, Any]) -> bool:
    """Does `condition` hold for these facts? A missing fact makes a comparison false (never an error)."""
    if "all" in condition:
        return all(evaluate(part, facts) for part in condition["all"])
    if "any" in condition:
        return any(evaluate(part, facts) for part in condition["any"])
    if "not" in condition:
        return not evaluate(condition["not"], facts)
    op, expected = condition.get("op", "eq"), condition.get("value")
    actual = facts.get(condition["field"])
    if op == "exists":
        return (actual not in (None, "", [], False)) == bool(expected if expected is not None else True)
    if actual is None:
        return op in ("ne", "not_in")
    if isinstance(actual, (list, tuple, set)):  # a set-valued fact (tags): eq/in mean "contains"
        wanted = expected if isinstance(expected, list) else [expected]
        hit = any(item in actual for item in wanted)
        return hit if op in ("eq", "in") else (not hit if op in ("ne", "not_in") else False)
    if op in ("in", "not_in"):
        hit = actual in expected or str(actual) in [str(e) for e in expected]
        return hit if op == "in" else not hit
    if isinstance(actual, bool) or isinstance(expected, bool):
        same = bool(actual) == (expected if isinstance(expected, bool) else str(expected).lower() == "true")
        return same if op == "eq" else (not same if op == "ne" else False)
    left, right = _decimal(actual), _decimal(expected)
    if left is None or right is None:
        left, right = str(actual), str(expected)
    return {"eq": left == right, "ne": left != right, "gt": left > right, "gte": left >= right,
            "lt": left < right, "lte": left <= right}[op]
