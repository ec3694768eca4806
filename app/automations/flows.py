"""Managing flows: create, edit (a new version each time), switch on and off, install from the library, preview."""
from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.automations.definitions import evaluate, step_targets, validate_definition
from app.automations.segments import bind_segments, trigger_matches
from app.models import Cart, Customer, Flow, FlowVersion, Order, Signal, utcnow

LIBRARY_DIR = Path(__file__).parent / "library"
PREVIEW_DAYS = 30
PREVIEW_LIMIT = 5000


class InvalidFlow(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def library() -> dict[str, dict]:
    """The ready flows a shop owner can switch on, by key (the file name)."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(LIBRARY_DIR.glob("*.json"))}


def checked_definition(session: Session, shop_id: int, definition: dict, *, lock: bool = False) -> dict:
    """The definition as stored: valid, with the segments it names bound to their ids (names accepted on input,
    so a later rename cannot unhook the flow); InvalidFlow with every problem otherwise. `lock` when it is
    being saved: those segments cannot be deleted until the transaction ends (segments.bind_segments)."""
    problems = validate_definition(definition)
    if problems:
        raise InvalidFlow(problems)
    bound, problems = bind_segments(session, shop_id, definition, lock=lock)
    if problems:
        raise InvalidFlow(problems)
    return bound


def create_flow(session: Session, shop_id: int, name: str, definition: dict, *, enabled: bool = False) -> Flow:
    definition = checked_definition(session, shop_id, definition, lock=True)
    flow = Flow(shop_id=shop_id, name=name, trigger=definition["trigger"], definition=definition, version=1, enabled=enabled)
    session.add(flow)
    session.flush()
    session.add(FlowVersion(shop_id=shop_id, flow_id=flow.id, version=1, definition=definition))
    session.flush()
    return flow


def update_flow(session: Session, flow: Flow, definition: dict) -> Flow:
    """Publish a new version; runs in flight keep the version they started on."""
    # The flow's row, locked and read again: a segment rename rewriting it (segments.bind_stored_names) or another
    # edit commits first, and this one builds on what they saved rather than overwriting it.
    session.refresh(flow, with_for_update=True)
    definition = checked_definition(session, flow.shop_id, definition, lock=True)
    flow.version += 1
    flow.definition, flow.trigger = definition, definition["trigger"]
    session.add(FlowVersion(shop_id=flow.shop_id, flow_id=flow.id, version=flow.version, definition=definition))
    session.flush()
    return flow


def set_enabled(session: Session, flow: Flow, enabled: bool) -> Flow:
    """Switch a flow on or off; on only while every segment it names still exists (InvalidFlow otherwise)."""
    if enabled:
        session.refresh(flow, with_for_update=True)  # the definition as last saved, held while it is checked
        _, problems = bind_segments(session, flow.shop_id, flow.definition or {}, lock=True)
        if problems:
            raise InvalidFlow(problems)
    flow.enabled = enabled
    session.flush()
    return flow


def install_library_flow(session: Session, shop_id: int, key: str, *, enabled: bool = False, name: str | None = None) -> Flow:
    template = library().get(key)
    if template is None:
        raise KeyError(f"no ready flow named {key!r}")
    definition = {k: v for k, v in template.items() if k not in ("name", "description")}
    return create_flow(session, shop_id, name or template.get("name", key), definition, enabled=enabled)


def describe(flow: Flow) -> dict:
    return {"id": flow.id, "name": flow.name, "trigger": flow.trigger, "enabled": flow.enabled, "version": flow.version,
            "definition": flow.definition, "updated_at": flow.updated_at.isoformat() if flow.updated_at else None}


# --- preview: what the flow would have done over the last 30 days, without doing any of it ---------------------

@dataclass
class _Entry:
    """One thing in the shop's history that would have started the flow, as the engine would have seen it."""

    customer_id: int | None
    context: dict  # like a run's context: the subject, and the signal's payload
    email: str | None = None
    phone: str | None = None
    bought: bool = False  # a cart that was later bought


def _history(session: Session, shop_id: int, definition: dict, since: dt.datetime) -> list[_Entry]:
    """What in the shop's history would have fired the flow's trigger since `since` (read only)."""
    trigger = definition["trigger"]
    if trigger == "cart_abandoned":
        carts = session.scalars(select(Cart).where(Cart.shop_id == shop_id, Cart.last_activity_at >= since,
                                                   Cart.status.in_(("abandoned", "recovered", "lost")))
                                .limit(PREVIEW_LIMIT))
        return [_Entry(c.customer_id, {"subject": {"type": "cart", "id": c.id}, "signal": {}}, c.email, c.phone,
                       bought=c.status == "recovered") for c in carts]
    if trigger in ("order_placed", "order_paid", "order_cancelled"):
        column = {"order_placed": Order.placed_at, "order_paid": Order.paid_at, "order_cancelled": Order.cancelled_at}[trigger]
        orders = session.scalars(select(Order).where(Order.shop_id == shop_id, column >= since).limit(PREVIEW_LIMIT))
        return [_Entry(o.customer_id, {"subject": {"type": "order", "id": o.id}, "signal": {}}, o.email, o.phone)
                for o in orders]
    if trigger == "customer_created":
        customers = session.scalars(select(Customer).where(Customer.shop_id == shop_id, Customer.created_at >= since)
                                    .limit(PREVIEW_LIMIT))
        return [_Entry(c.id, {"subject": {"type": "customer", "id": c.id}, "signal": {}}) for c in customers]
    # Any other trigger (segment entered, tag added, custom event...): the signals the shop recorded.
    found = session.scalars(select(Signal).where(Signal.shop_id == shop_id, Signal.kind == trigger,
                                                 Signal.occurred_at >= since).order_by(Signal.id).limit(PREVIEW_LIMIT))
    return [_Entry(s.customer_id, {"subject": {"type": s.subject_type, "id": s.subject_id}, "signal": s.payload or {}})
            for s in found if trigger_matches(definition, s.kind, s.payload)]


def _customers_by_contact(session: Session, shop_id: int, entries: list[_Entry]) -> None:
    """Guests' carts and orders belong to the customer with their email or phone, as the engine finds them
    (app.automations.detection.customer_for_contact), but without creating anyone: a preview writes nothing."""
    for column, attribute in ((Customer.email, "email"), (Customer.phone, "phone")):
        wanted = {getattr(e, attribute) for e in entries if e.customer_id is None and getattr(e, attribute)}
        if not wanted:
            continue
        owners: dict[str, int] = {}
        for value, customer_id in session.execute(select(column, Customer.id).where(
                Customer.shop_id == shop_id, column.in_(wanted)).order_by(Customer.id)):
            owners.setdefault(value, customer_id)
        for entry in entries:
            if entry.customer_id is None and getattr(entry, attribute) in owners:
                entry.customer_id = owners[getattr(entry, attribute)]


def preview_flow(session: Session, shop_id: int, definition: dict, now: dt.datetime | None = None) -> dict:
    """How many would have entered, how many messages per step and coupons, over the last 30 days; sends nothing.

    The audience and the conditions read the same facts the engine reads (app.automations.engine.gather_facts):
    the customer's tags and the segments they are in now, the cart or order, the signal's payload.
    """
    from app.automations.engine import _Book, gather_facts

    definition = checked_definition(session, shop_id, definition)
    now = now or utcnow()
    entries = _history(session, shop_id, definition, now - dt.timedelta(days=PREVIEW_DAYS))
    _customers_by_contact(session, shop_id, entries)
    book = _Book(session, shop_id)  # tags, segments, customers and subjects read once for every entry
    book.load_customers({e.customer_id for e in entries if e.customer_id is not None})
    subjects = [e.context["subject"] for e in entries]
    book.load_subjects({s["id"] for s in subjects if s["type"] == "cart" and s["id"]},
                       {s["id"] for s in subjects if s["type"] == "order" and s["id"]})
    entered, excluded = 0, 0
    messages: Counter = Counter()
    coupons = 0
    steps = definition["steps"]
    for entry in entries:
        customer = session.get(Customer, entry.customer_id) if entry.customer_id is not None else None
        facts = gather_facts(session, shop_id, customer, entry.context, book=book)
        if definition.get("audience") and not evaluate(definition["audience"], facts):
            excluded += 1
            continue
        entered += 1
        reachable = {"email": bool(entry.email or (customer is not None and customer.email)),
                     "sms": bool(entry.phone or (customer is not None and customer.phone)), "push": True}
        index, guard = 0, 0
        while index is not None and index < len(steps) and guard < 100:
            guard += 1
            step = steps[index]
            if entry.bought and "purchased" in (definition.get("exit") or []) and step["type"] != "wait":
                break  # a cart that was bought: assume the purchase came first (the preview cannot know the hour)
            if step["type"] == "send" and reachable[step["channel"]]:
                messages[step["id"]] += 1
            elif step["type"] == "coupon":
                coupons += 1
            targets = step_targets(steps, index)
            index = targets[0] if step["type"] != "condition" or evaluate(step["if"], facts) else targets[-1]
    return {"days": PREVIEW_DAYS, "entered": entered, "excluded_by_audience": excluded,
            "messages": dict(messages), "messages_total": sum(messages.values()), "coupons": coupons}
