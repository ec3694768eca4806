"""Dynamic segments: definitions as data, validated, compiled to one SQL query, and their stored membership.

A definition combines rules with `all`, `any` and `not`:

    {"all": [{"rule": "bought", "within_days": 30},
             {"rule": "lifetime_spend", "op": "gt", "amount": "2000", "currency": "PLN"},
             {"any": [{"rule": "opened_email", "of_last": 3}, {"rule": "has_tag", "tag": "VIP"}]}]}

`compile_segment` turns it into one `SELECT customers.id ...` (SQLAlchemy Core; SQLite and PostgreSQL), each
rule a set-based `IN (subquery)` or a column test, so the database answers for every customer of the shop at
once. Enabled segments keep their members in `segment_members`: the clock refreshes them on a schedule, and
signals that can change a customer's membership (an order, a tag...) refresh that customer at once. Entering
and leaving emit `segment_entered` / `segment_left`, which flows can start on.
"""
from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping

from sqlalchemy import and_, delete, exists, false, func, literal, not_, or_, select, true, update
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement, Select

from app.automations.batches import enqueue_batches
from app.automations.signals import cause_chain
from app.clock import clock_scan, period_key
from app.jobs.queue import enqueue
from app.jobs.registry import job_kind
from app.models import (Customer, CustomerTag, Message, Order, Segment, SegmentMember, Shop, Signal, Tag, utcnow)

customers, orders, messages, tags = Customer.__table__, Order.__table__, Message.__table__, Tag.__table__
customer_tags, members, segments = CustomerTag.__table__, SegmentMember.__table__, Segment.__table__

RULES = ("bought", "lifetime_spend", "orders_count", "opened_email", "clicked_email", "has_tag", "locale")
COMPARISONS = ("gt", "gte", "lt", "lte")
MAX_DAYS, MAX_LAST_EMAILS, MAX_DEPTH = 3650, 50, 6
# Paid and not cancelled: what counts towards a customer's spend when we add up their orders ourselves.
SPEND_FINANCIAL_STATUSES = ("paid", "partially_refunded")
# Signals after which a customer's memberships may have changed; refreshed for that customer straight away.
MEMBERSHIP_SIGNALS = ("order_placed", "order_paid", "order_cancelled", "refund_created", "customer_created",
                      "customer_updated", "tag_added", "tag_removed")
SEGMENT_SIGNALS = ("segment_entered", "segment_left")
REFRESH_SCAN, REFRESH_EVERY = "automations.refresh_segments", 900
REFRESH_BATCH = 20


class InvalidSegment(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class SegmentScope:
    """What a definition is evaluated against: one shop, one moment, and the shop's currency (for customers
    whose platform never told us theirs)."""

    shop_id: int
    now: dt.datetime
    currency: str


# --- validation -------------------------------------------------------------------------------------------------

def validate_segment(definition: Any) -> list[str]:
    """Every problem with a segment definition, as sentences for the shop owner; empty when it is valid."""
    if not isinstance(definition, dict):
        return ["the definition must be a JSON object such as {\"all\": [{\"rule\": \"bought\", \"within_days\": 30}]}"]
    return _validate(definition, "definition", 0)


def _validate(node: Any, where: str, depth: int) -> list[str]:
    if depth > MAX_DEPTH:
        return [f"{where}: nested more than {MAX_DEPTH} levels deep"]
    if not isinstance(node, dict) or not node:
        return [f"{where}: must be an object: a rule, or all/any/not"]
    combinators = [key for key in ("all", "any", "not") if key in node]
    if len(combinators) > 1 or (combinators and len(node) > 1):
        return [f"{where}: an object holds exactly one of all, any, not, or a rule"]
    if combinators == ["not"]:
        return _validate(node["not"], f"{where}.not", depth + 1)
    if combinators:
        key = combinators[0]
        parts = node[key]
        if not isinstance(parts, list) or not parts:
            return [f"{where}.{key}: must be a non-empty list"]
        return [p for i, part in enumerate(parts) for p in _validate(part, f"{where}.{key}[{i}]", depth + 1)]
    rule = node.get("rule")
    if rule not in RULES:
        return [f"{where}: unknown rule {rule!r}; rules are {', '.join(RULES)}"]
    where = f"{where} ({rule})"
    allowed = {"rule", *_RULE_KEYS[rule]}
    unknown = sorted(set(node) - allowed)
    problems = [f"{where}: unknown key {key!r}; expected {', '.join(sorted(allowed - {'rule'}))}" for key in unknown]
    return problems + [f"{where}: {p}" for p in _RULE_CHECKS[rule](node)]


def _days(node: dict, key: str = "within_days", required: bool = True) -> list[str]:
    value = node.get(key)
    if value is None:
        return [f"{key} is required (a whole number of days)"] if required else []
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DAYS:
        return [f"{key} must be a whole number of days from 1 to {MAX_DAYS}"]
    return []


def _count(node: dict, key: str, low: int = 0, high: int = 1_000_000, required: bool = True) -> list[str]:
    value = node.get(key)
    if value is None:
        return [f"{key} is required (a whole number)"] if required else []
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return [f"{key} must be a whole number from {low} to {high}"]
    return []


def _comparison(node: dict) -> list[str]:
    return [] if node.get("op") in COMPARISONS else [f"op must be one of {', '.join(COMPARISONS)}"]


def amount_of(value: Any) -> Decimal | None:
    """A money amount written as a string ("2000.00") or a whole number; floats are refused (binary rounding)."""
    if isinstance(value, bool) or isinstance(value, float) or not isinstance(value, (str, int)):
        return None
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() and amount >= 0 else None


def _check_bought(node: dict) -> list[str]:
    return _days(node) + _count(node, "at_least", 1, 1000, required=False)


def _check_spend(node: dict) -> list[str]:
    problems = _comparison(node)
    if amount_of(node.get("amount")) is None:
        problems.append('amount must be a non-negative decimal written as a string, e.g. "2000.00"')
    currency = node.get("currency")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha() and currency.isupper()):
        problems.append('currency must be an ISO 4217 code such as "PLN" (amounts are never converted)')
    return problems


def _check_orders_count(node: dict) -> list[str]:
    return _comparison(node) + _count(node, "value")


def _check_email(node: dict) -> list[str]:
    if (node.get("of_last") is None) == (node.get("within_days") is None):
        return ["needs exactly one of of_last (the last N emails sent) or within_days"]
    return _count(node, "of_last", 1, MAX_LAST_EMAILS, required=False) + _days(node, required=False)


def _check_tag(node: dict) -> list[str]:
    tag = node.get("tag")
    return [] if isinstance(tag, str) and tag.strip() and len(tag) <= 128 else ["tag must be a tag name (1-128 characters)"]


def _check_locale(node: dict) -> list[str]:
    values = node.get("in")
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and 2 <= len(v) <= 5 for v in values):
        return ['in must be a non-empty list of locales such as ["pl", "ro"]']
    return []


_RULE_KEYS = {"bought": ("within_days", "at_least"), "lifetime_spend": ("op", "amount", "currency"),
              "orders_count": ("op", "value"), "opened_email": ("of_last", "within_days"),
              "clicked_email": ("of_last", "within_days"), "has_tag": ("tag",), "locale": ("in",)}
_RULE_CHECKS = {"bought": _check_bought, "lifetime_spend": _check_spend, "orders_count": _check_orders_count,
                "opened_email": _check_email, "clicked_email": _check_email, "has_tag": _check_tag,
                "locale": _check_locale}


# --- compiling to SQL -------------------------------------------------------------------------------------------

def compile_segment(definition: dict, scope: SegmentScope) -> Select:
    """`SELECT customers.id` of the shop's customers (erased ones excluded) the definition holds for."""
    problems = validate_segment(definition)
    if problems:
        raise InvalidSegment(problems)
    return select(customers.c.id).where(customers.c.shop_id == scope.shop_id, customers.c.redacted_at.is_(None),
                                        _compile(definition, scope))


def _compile(node: dict, scope: SegmentScope) -> ColumnElement[bool]:
    # Every piece is TRUE or FALSE, never NULL, so `not` means what the shop owner expects.
    if "all" in node:
        return and_(true(), *(_compile(part, scope) for part in node["all"]))
    if "any" in node:
        return or_(false(), *(_compile(part, scope) for part in node["any"]))
    if "not" in node:
        return not_(_compile(node["not"], scope))
    return _COMPILERS[node["rule"]](node, scope)


def _customers_in(ids: Select) -> ColumnElement[bool]:
    return customers.c.id.in_(ids)


def _paid_orders(scope: SegmentScope):
    return and_(orders.c.shop_id == scope.shop_id, orders.c.customer_id.is_not(None), orders.c.cancelled_at.is_(None),
                or_(orders.c.paid_at.is_not(None), orders.c.financial_status.in_(SPEND_FINANCIAL_STATUSES)))


def _bought(node: dict, scope: SegmentScope) -> ColumnElement[bool]:
    since = scope.now - dt.timedelta(days=node["within_days"])
    placed = func.coalesce(orders.c.placed_at, orders.c.created_at)
    query = select(orders.c.customer_id).where(orders.c.shop_id == scope.shop_id, orders.c.customer_id.is_not(None),
                                               orders.c.cancelled_at.is_(None), placed >= since)
    if node.get("at_least", 1) > 1:
        query = query.group_by(orders.c.customer_id).having(func.count() >= node["at_least"])
    return _customers_in(query)


def _at_least(column_test, orders_test) -> ColumnElement[bool]:
    return or_(column_test, _customers_in(orders_test))


def _lifetime_spend(node: dict, scope: SegmentScope) -> ColumnElement[bool]:
    """The larger of what the platform reports (Shopify) and the paid orders we hold (WooCommerce reports none),
    in the rule's currency only: amounts are never converted."""
    amount, currency, op = amount_of(node["amount"]), node["currency"], node["op"]
    strict = op in ("gt", "lte")  # lt/lte are "not at least", so the two sources combine the same way

    def above() -> ColumnElement[bool]:
        reported = customers.c.total_spent > amount if strict else customers.c.total_spent >= amount
        same_currency = func.coalesce(customers.c.currency, scope.currency) == currency
        total = func.sum(orders.c.total)
        summed = (select(orders.c.customer_id).where(_paid_orders(scope), orders.c.currency == currency)
                  .group_by(orders.c.customer_id).having(total > amount if strict else total >= amount))
        return _at_least(and_(same_currency, reported), summed)

    return above() if op in ("gt", "gte") else not_(above())


def _orders_count(node: dict, scope: SegmentScope) -> ColumnElement[bool]:
    value, op = node["value"], node["op"]
    threshold = {"gt": value + 1, "gte": value, "lt": value, "lte": value + 1}[op]
    counted = (select(orders.c.customer_id).where(orders.c.shop_id == scope.shop_id, orders.c.customer_id.is_not(None),
                                                  orders.c.cancelled_at.is_(None))
               .group_by(orders.c.customer_id).having(func.count() >= threshold))
    at_least = or_(customers.c.orders_count >= threshold, _customers_in(counted)) if threshold > 0 else true()
    return at_least if op in ("gt", "gte") else not_(at_least)


def _email_action(column):
    def compile_rule(node: dict, scope: SegmentScope) -> ColumnElement[bool]:
        sent = and_(messages.c.shop_id == scope.shop_id, messages.c.customer_id.is_not(None),
                    messages.c.channel == "email", messages.c.sent_at.is_not(None))
        if node.get("within_days"):
            since = scope.now - dt.timedelta(days=node["within_days"])
            return _customers_in(select(messages.c.customer_id).where(sent, column >= since))
        ranked = select(messages.c.customer_id, column.label("acted_at"), func.row_number().over(
            partition_by=messages.c.customer_id, order_by=(messages.c.sent_at.desc(), messages.c.id.desc()),
        ).label("recency")).where(sent).subquery("recent_emails")
        return _customers_in(select(ranked.c.customer_id).where(ranked.c.recency <= node["of_last"],
                                                                ranked.c.acted_at.is_not(None)))

    return compile_rule


def _has_tag(node: dict, scope: SegmentScope) -> ColumnElement[bool]:
    tagged = (select(customer_tags.c.customer_id).join(tags, and_(tags.c.shop_id == customer_tags.c.shop_id,
                                                                   tags.c.id == customer_tags.c.tag_id))
              .where(customer_tags.c.shop_id == scope.shop_id, func.lower(tags.c.name) == node["tag"].strip().lower()))
    return _customers_in(tagged)


def _locale(node: dict, scope: SegmentScope) -> ColumnElement[bool]:
    wanted = sorted({value[:2].lower() for value in node["in"]})
    return and_(customers.c.locale.is_not(None), func.lower(func.substr(customers.c.locale, 1, 2)).in_(wanted))


_COMPILERS = {"bought": _bought, "lifetime_spend": _lifetime_spend, "orders_count": _orders_count,
              "opened_email": _email_action(messages.c.opened_at), "clicked_email": _email_action(messages.c.clicked_at),
              "has_tag": _has_tag, "locale": _locale}


def scope_for(session: Session, shop_id: int, now: dt.datetime | None = None) -> SegmentScope:
    shop = session.get(Shop, shop_id)
    return SegmentScope(shop_id, now or utcnow(), (shop.currency if shop is not None else None) or "PLN")


def count_matching(session: Session, definition: dict, scope: SegmentScope) -> int:
    """How many customers the definition holds for right now (one query; nothing stored)."""
    return session.scalar(select(func.count()).select_from(compile_segment(definition, scope).subquery()))


# --- managing segments ------------------------------------------------------------------------------------------

def _checked(definition: Any) -> dict:
    problems = validate_segment(definition)
    if problems:
        raise InvalidSegment(problems)
    return definition


def create_segment(session: Session, shop_id: int, name: str, definition: Any, *, enabled: bool = False) -> Segment:
    segment = Segment(shop_id=shop_id, name=name, definition=_checked(definition), enabled=enabled, version=1)
    session.add(segment)
    session.flush()
    if enabled:
        _refresh_soon(session, segment)
    return segment


def update_segment(session: Session, segment: Segment, definition: Any) -> Segment:
    """A new definition: the next refresh records who is in without announcing entries (nobody "entered")."""
    segment.definition = _checked(definition)
    segment.version += 1
    segment.refreshed_at = None
    session.flush()
    if segment.enabled:
        _refresh_soon(session, segment)
    return segment


def _refresh_soon(session: Session, segment: Segment) -> None:
    session.flush()
    key = f"automations.refresh_segment:{segment.shop_id}:{segment.id}:{segment.version}:{utcnow().timestamp()}"
    enqueue(session, "automations.refresh_segments", shop_id=segment.shop_id, segment_ids=[segment.id], dedupe_key=key)


def set_segment_enabled(session: Session, segment: Segment, enabled: bool) -> Segment:
    """Switching off forgets the members (they would go stale); switching on queues a refresh straight away."""
    if segment.enabled == enabled:
        return segment
    segment.enabled = enabled
    if enabled:
        _refresh_soon(session, segment)
    else:
        session.execute(delete(members).where(members.c.shop_id == segment.shop_id, members.c.segment_id == segment.id))
        segment.member_count, segment.refreshed_at = 0, None
    session.flush()
    return segment


def describe_segment(segment: Segment) -> dict:
    return {"id": segment.id, "name": segment.name, "definition": segment.definition, "enabled": segment.enabled,
            "version": segment.version, "member_count": segment.member_count,
            "refreshed_at": segment.refreshed_at.isoformat() if segment.refreshed_at else None,
            "updated_at": segment.updated_at.isoformat() if segment.updated_at else None}


# --- membership ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Refreshed:
    entered: list[int]
    left: list[int]
    announced: bool  # False on a segment's first refresh: a baseline, no entry signals


def _insert(session: Session, table):
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(table)


def refresh_segment(session: Session, segment: Segment, now: dt.datetime,
                    customer_ids: Iterable[int] | None = None, *,
                    causes: Mapping[int, list[int]] | None = None) -> Refreshed:
    """Bring the stored members in line with the definition (all customers, or only `customer_ids`), in two
    statements (INSERT ... SELECT the newcomers, DELETE ... the leavers), and announce who entered and left.

    `causes`: customer -> the flows whose tag steps changed them (their signals carry it as `caused_by`)."""
    if session.get_bind().dialect.name == "postgresql":  # one refresh of a segment at a time
        session.execute(select(segments.c.id).where(segments.c.id == segment.id).with_for_update())
    scope = SegmentScope(segment.shop_id, now, scope_for(session, segment.shop_id).currency)
    current = compile_segment(segment.definition, scope)
    only = None if customer_ids is None else sorted(set(customer_ids))
    if only is not None:
        current = current.where(customers.c.id.in_(only))
    inside = current.subquery("inside")
    held = exists().where(members.c.shop_id == segment.shop_id, members.c.segment_id == segment.id,
                          members.c.customer_id == inside.c.id)
    newcomers = select(literal(segment.shop_id), literal(segment.id), inside.c.id,
                       literal(now, members.c.entered_at.type)).where(~held)
    entered = list(session.execute(_insert(session, members).from_select(
        ["shop_id", "segment_id", "customer_id", "entered_at"], newcomers,
    ).on_conflict_do_nothing(index_elements=["shop_id", "segment_id", "customer_id"])
        .returning(members.c.customer_id)).scalars())
    leaving = delete(members).where(members.c.shop_id == segment.shop_id, members.c.segment_id == segment.id,
                                    members.c.customer_id.not_in(current))
    if only is not None:
        leaving = leaving.where(members.c.customer_id.in_(only))
    left = list(session.execute(leaving.returning(members.c.customer_id)).scalars())
    announced = segment.refreshed_at is not None
    if announced:
        _announce(session, segment, "segment_entered", entered, now, causes or {})
        _announce(session, segment, "segment_left", left, now, causes or {})
    session.execute(update(segments).where(segments.c.id == segment.id).values(
        member_count=select(func.count()).select_from(members).where(
            members.c.shop_id == segment.shop_id, members.c.segment_id == segment.id).scalar_subquery(),
        refreshed_at=now if only is None else segments.c.refreshed_at))
    session.refresh(segment)
    return Refreshed(sorted(entered), sorted(left), announced)


def _announce(session: Session, segment: Segment, kind: str, customer_ids: list[int], now: dt.datetime,
              causes: Mapping[int, list[int]]) -> None:
    if not customer_ids:
        return
    stamp = int(now.timestamp())
    rows = [dict(shop_id=segment.shop_id, kind=kind, customer_id=customer_id, subject_type=None, subject_id=None,
                 payload={"segment_id": segment.id, "segment": segment.name, "segment_version": segment.version,
                          **({"caused_by": list(causes[customer_id])} if causes.get(customer_id) else {})},
                 dedupe_key=f"{kind}:{segment.id}:{customer_id}:{stamp}", occurred_at=now, created_at=now,
                 routed_at=None) for customer_id in customer_ids]
    session.execute(_insert(session, Signal.__table__).on_conflict_do_nothing(index_elements=["shop_id", "dedupe_key"]),
                    rows)


def refresh_for_signals(session: Session, shop_id: int, signals: Iterable[Signal], now: dt.datetime) -> int:
    """Re-check the customers whose signals may have changed their membership; returns entries plus exits.
    A change a flow caused (a tag step's signal) is passed on as the cause of the entries and exits it makes."""
    changed = [s for s in signals if s.kind in MEMBERSHIP_SIGNALS and s.customer_id is not None]
    causes: dict[int, list[int]] = {}
    for signal in changed:
        chain = cause_chain(signal.payload)
        if chain:
            causes[signal.customer_id] = list(dict.fromkeys(causes.get(signal.customer_id, []) + chain))
    return refresh_customers(session, shop_id, {s.customer_id for s in changed}, now, causes=causes)


def refresh_customers(session: Session, shop_id: int, customer_ids: Iterable[int], now: dt.datetime, *,
                      causes: Mapping[int, list[int]] | None = None) -> int:
    """Re-check these customers in every enabled segment of the shop (one that has had its first refresh);
    `causes` as in refresh_segment."""
    customer_ids = set(customer_ids)
    if not customer_ids:
        return 0
    changed = 0
    for segment in session.scalars(select(Segment).where(Segment.shop_id == shop_id, Segment.enabled.is_(True),
                                                         Segment.refreshed_at.is_not(None)).order_by(Segment.id)):
        result = refresh_segment(session, segment, now, customer_ids, causes=causes)
        changed += len(result.entered) + len(result.left)
    return changed


def segment_names(session: Session, shop_id: int, customer_id: int) -> list[int | str]:
    """The enabled segments a customer is in now, by id and by name (the fact `customer.segments` of flow
    conditions): flows store ids (`bind_segments`), definitions written before that named them."""
    return segment_names_of(session, shop_id, [customer_id]).get(customer_id, [])


def segment_names_of(session: Session, shop_id: int, customer_ids: Iterable[int]) -> dict[int, list[int | str]]:
    """`segment_names` for many customers in one query: customer id -> ids then names (customers in none are absent)."""
    ids: dict[int, list[int]] = {}
    names: dict[int, list[str]] = {}
    for customer_id, segment_id, name in session.execute(select(
            members.c.customer_id, segments.c.id, segments.c.name).join(segments, and_(
            members.c.shop_id == segments.c.shop_id, members.c.segment_id == segments.c.id)).where(
            members.c.shop_id == shop_id, members.c.customer_id.in_(set(customer_ids)), segments.c.enabled.is_(True))
            .order_by(members.c.customer_id, segments.c.name)):
        ids.setdefault(customer_id, []).append(segment_id)
        names.setdefault(customer_id, []).append(name)
    return {customer_id: sorted(ids[customer_id]) + names[customer_id] for customer_id in ids}


# --- flows that name segments ----------------------------------------------------------------------------------

SEGMENT_FIELD = "customer.segments"


def _conditions(definition: dict) -> Iterable[dict]:
    """Every leaf condition of the audience and of the condition steps."""
    todo = [definition.get("audience")] + [step.get("if") for step in definition.get("steps") or []
                                           if isinstance(step, dict)]
    while todo:
        node = todo.pop()
        if not isinstance(node, dict):
            continue
        if "all" in node or "any" in node:
            todo += list(node.get("all") or node.get("any") or [])
        elif "not" in node:
            todo.append(node["not"])
        else:
            yield node


def lock_segments(session: Session, shop_id: int, segment_ids: Iterable[int], *, share: bool = False) -> set[int]:
    """Lock these segment rows to the end of the transaction (`share`: against deletion only, so flows naming the
    same segment are still saved side by side); returns the ids that exist. A delete holds its segment's row
    exclusively: whoever comes second waits and then sees what the first one committed. SQLite has no row
    locks, but lets one writer in at a time (BEGIN IMMEDIATE), which serialises the same transactions."""
    wanted = sorted(set(segment_ids))
    if not wanted:
        return set()
    return set(session.scalars(select(segments.c.id).where(segments.c.shop_id == shop_id, segments.c.id.in_(wanted))
                               .order_by(segments.c.id).with_for_update(read=share)))


def bind_segments(session: Session, shop_id: int, definition: dict, *, lock: bool = False) -> tuple[dict, list[str]]:
    """The definition with every segment it names (the segment_entered/left trigger's `segment`, the values of
    conditions on `customer.segments`) replaced by the segment's id, so renaming a segment never silently
    unhooks a flow; and the problems (a name or id the shop has no segment for).

    `lock` (saving or switching on a flow): the segments it names are held against deletion until the
    transaction ends, so a concurrent DELETE /segments/<id> either waits and then sees this flow, or has
    deleted the segment first and this answers "no segment"."""
    definition = copy.deepcopy(definition)
    by_name = dict(session.execute(select(segments.c.name, segments.c.id).where(segments.c.shop_id == shop_id)).all())
    known = set(by_name.values())
    problems: list[str] = []
    used: set[int] = set()

    def bind(value: Any, where: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            problems.append(f"{where}: a segment is named by its name or its id")
        elif isinstance(value, int) and value not in known:
            problems.append(f"{where}: no segment with id {value}")
        elif isinstance(value, str) and value not in by_name:
            problems.append(f"{where}: no segment named {value!r}")
        else:
            used.add(by_name[value] if isinstance(value, str) else value)
            if isinstance(value, str):
                return by_name[value]
        return value

    if definition.get("trigger") in SEGMENT_SIGNALS and "segment" in definition:
        definition["segment"] = bind(definition["segment"], "segment")
    for condition in _conditions(definition):
        if condition.get("field") == SEGMENT_FIELD and condition.get("op", "eq") != "exists":
            value = condition.get("value")
            where = f"condition on {SEGMENT_FIELD}"
            condition["value"] = [bind(v, where) for v in value] if isinstance(value, list) else bind(value, where)
    if lock and used:
        gone = used - lock_segments(session, shop_id, used, share=True)
        problems += [f"segment {segment_id} was deleted meanwhile" for segment_id in sorted(gone)]
    return definition, problems


def _names(value: Any, segment: Segment, by_name: bool = True) -> bool:
    if isinstance(value, bool):
        return False
    return value == segment.id or (by_name and isinstance(value, str) and value == segment.name)


def names_segment(definition: dict, segment: Segment, *, by_id: bool = True) -> bool:
    """Does the flow definition reference this segment: by id, as `bind_segments` stores it, or by name, as
    definitions stored before it did (only by name when `by_id` is False)?"""
    def hit(value: Any) -> bool:
        return _names(value, segment) if by_id else (isinstance(value, str) and value == segment.name)

    if definition.get("trigger") in SEGMENT_SIGNALS and hit(definition.get("segment")):
        return True
    for condition in _conditions(definition):
        if condition.get("field") == SEGMENT_FIELD:
            value = condition.get("value")
            if any(hit(v) for v in (value if isinstance(value, list) else [value])):
                return True
    return False


def bind_stored_names(session: Session, segment: Segment) -> int:
    """Before a rename: flows (and the versions runs are on) that still name the segment by its old name get its
    id instead, so the rename cannot unhook them; returns how many definitions were rewritten."""
    from app.models import Flow, FlowVersion

    def swap(value: Any) -> Any:
        return segment.id if isinstance(value, str) and value == segment.name else value

    rewritten = 0
    for model in (Flow, FlowVersion):
        query = select(model).where(model.shop_id == segment.shop_id).order_by(model.id)
        if model is Flow:  # an edit saved meanwhile is read (and kept), never overwritten with the old definition
            query = query.with_for_update().execution_options(populate_existing=True)
        for row in session.scalars(query):
            if not row.definition or not names_segment(row.definition, segment, by_id=False):
                continue
            definition = copy.deepcopy(row.definition)
            if definition.get("trigger") in SEGMENT_SIGNALS:
                definition["segment"] = swap(definition.get("segment"))
            for condition in _conditions(definition):
                if condition.get("field") == SEGMENT_FIELD:
                    value = condition.get("value")
                    condition["value"] = [swap(v) for v in value] if isinstance(value, list) else swap(value)
            row.definition = definition
            rewritten += 1
    session.flush()
    return rewritten


class SegmentInUse(Exception):
    """The segment is referenced by flows that are on, or by runs still in flight."""

    def __init__(self, flows: list[dict]):
        super().__init__(f"segment is used by {len(flows)} flow(s)")
        self.flows = flows


def flows_using(session: Session, segment: Segment) -> list[dict]:
    """The flows a deletion would break: switched on and naming the segment, or with runs in flight on a
    version that names it (a condition there would quietly turn false)."""
    from app.models import Flow, FlowRun, FlowVersion

    using: dict[int, dict] = {}
    for flow in session.scalars(select(Flow).where(Flow.shop_id == segment.shop_id, Flow.enabled.is_(True))
                                .order_by(Flow.id).execution_options(populate_existing=True)):
        if names_segment(flow.definition or {}, segment):
            using[flow.id] = {"id": flow.id, "name": flow.name, "enabled": True, "runs_in_flight": False}
    in_flight = session.execute(select(Flow.id, Flow.name, Flow.enabled, FlowVersion.definition).join(
        FlowVersion, and_(FlowVersion.shop_id == Flow.shop_id, FlowVersion.flow_id == Flow.id)).where(
        Flow.shop_id == segment.shop_id, exists().where(
            FlowRun.shop_id == Flow.shop_id, FlowRun.flow_id == Flow.id, FlowRun.flow_version == FlowVersion.version,
            FlowRun.state.in_(("waiting", "running")))).order_by(Flow.id))
    for flow_id, name, enabled, definition in in_flight:
        if names_segment(definition or {}, segment):
            using.setdefault(flow_id, {"id": flow_id, "name": name, "enabled": enabled, "runs_in_flight": True})
            using[flow_id]["runs_in_flight"] = True
    return [using[key] for key in sorted(using)]


def delete_segment(session: Session, segment: Segment) -> None:
    """Delete the segment and its stored members; SegmentInUse (naming the flows) when a flow still needs it.

    The segment's row is locked first (lock_segments): a flow being saved or switched on with it commits
    before the check below reads the flows, and one that comes later finds the segment gone."""
    if not lock_segments(session, segment.shop_id, [segment.id]):
        return  # deleted meanwhile
    using = flows_using(session, segment)
    if using:
        raise SegmentInUse(using)
    session.execute(delete(members).where(members.c.shop_id == segment.shop_id, members.c.segment_id == segment.id))
    session.delete(segment)
    session.flush()


def trigger_matches(definition: dict, kind: str, payload: dict | None) -> bool:
    """A `segment_entered`/`segment_left` flow starts only for its own segment (by id; by name in definitions
    stored before flows were bound to ids)."""
    if kind not in SEGMENT_SIGNALS:
        return True
    wanted, payload = definition.get("segment"), payload or {}
    return wanted is not None and (wanted == payload.get("segment") or wanted == payload.get("segment_id"))


def members_page(session: Session, segment: Segment, *, after: int = 0, limit: int = 100) -> list[dict]:
    """Stored members in customer id order, after the id `after` (keyset pagination)."""
    rows = session.execute(select(members.c.customer_id, members.c.entered_at, customers.c.platform_id).join(
        customers, and_(customers.c.shop_id == members.c.shop_id, customers.c.id == members.c.customer_id)).where(
        members.c.shop_id == segment.shop_id, members.c.segment_id == segment.id, members.c.customer_id > after)
        .order_by(members.c.customer_id).limit(limit)).all()
    return [{"customer_id": r.customer_id, "platform_id": r.platform_id, "entered_at": r.entered_at.isoformat()}
            for r in rows]


# --- the clock ---------------------------------------------------------------------------------------------------

def enqueue_segment_refreshes(session: Session, now: dt.datetime, *, batch: int = REFRESH_BATCH) -> int:
    """One `automations.refresh_segments` job per shop per batch of enabled segments."""
    due = select(segments.c.id, segments.c.shop_id).where(segments.c.enabled.is_(True))
    return enqueue_batches(session, "automations.refresh_segments", due, argument="segment_ids", batch=batch,
                           dedupe_prefix=period_key(REFRESH_SCAN, REFRESH_EVERY, now), now=now)


@clock_scan(REFRESH_SCAN, every_seconds=REFRESH_EVERY)
def scan_segments(runtime, now: dt.datetime) -> int:
    with runtime.sessions.begin() as session:
        return enqueue_segment_refreshes(session, now)


@job_kind("automations.refresh_segments")
def refresh_segments_job(ctx, segment_ids: list[int]) -> None:
    """Refresh each enabled segment's members (time alone moves people out of "bought in the last 30 days")."""
    now = utcnow()
    for segment in ctx.session.scalars(select(Segment).where(Segment.shop_id == ctx.shop_id, Segment.id.in_(segment_ids),
                                                             Segment.enabled.is_(True)).order_by(Segment.id)):
        refresh_segment(ctx.session, segment, now)
