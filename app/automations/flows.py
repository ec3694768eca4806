"""Managing flows: create, edit (a new version each time), switch on and off, install from the library, preview."""
from __future__ import annotations

import copy
import datetime as dt
import json
from collections import Counter
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.automations.definitions import evaluate, step_targets, validate_definition
from app.models import Cart, Customer, Flow, FlowVersion, Order, utcnow

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


def _checked(definition: dict) -> dict:
    problems = validate_definition(definition)
    if problems:
        raise InvalidFlow(problems)
    return copy.deepcopy(definition)


def create_flow(session: Session, shop_id: int, name: str, definition: dict, *, enabled: bool = False) -> Flow:
    definition = _checked(definition)
    flow = Flow(shop_id=shop_id, name=name, trigger=definition["trigger"], definition=definition, version=1, enabled=enabled)
    session.add(flow)
    session.flush()
    session.add(FlowVersion(shop_id=shop_id, flow_id=flow.id, version=1, definition=definition))
    session.flush()
    return flow


def update_flow(session: Session, flow: Flow, definition: dict) -> Flow:
    """Publish a new version; runs in flight keep the version they started on."""
    definition = _checked(definition)
    flow.version += 1
    flow.definition, flow.trigger = definition, definition["trigger"]
    session.add(FlowVersion(shop_id=flow.shop_id, flow_id=flow.id, version=flow.version, definition=definition))
    session.flush()
    return flow


def set_enabled(session: Session, flow: Flow, enabled: bool) -> Flow:
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

def _history(session: Session, shop_id: int, trigger: str, since: dt.datetime) -> list[tuple[int | None, dict]]:
    """(customer id, facts) for each thing in the shop's history that would have fired `trigger`."""
    if trigger == "cart_abandoned":
        carts = session.scalars(select(Cart).where(Cart.shop_id == shop_id, Cart.last_activity_at >= since,
                                                   Cart.status.in_(("abandoned", "recovered", "lost")))
                                .limit(PREVIEW_LIMIT))
        return [(c.customer_id, {"cart.total": c.total, "cart.currency": c.currency, "cart.status": c.status,
                                 "_bought": c.status == "recovered", "_has_email": bool(c.email), "_has_phone": bool(c.phone)})
                for c in carts]
    if trigger in ("order_placed", "order_paid", "order_cancelled"):
        column = {"order_placed": Order.placed_at, "order_paid": Order.paid_at, "order_cancelled": Order.cancelled_at}[trigger]
        orders = session.scalars(select(Order).where(Order.shop_id == shop_id, column >= since).limit(PREVIEW_LIMIT))
        return [(o.customer_id, {"order.total": o.total, "order.status": o.status, "order.financial_status": o.financial_status,
                                 "order.payment_method": o.payment_method,
                                 "order.is_paid": o.paid_at is not None or (o.financial_status or "") == "paid",
                                 "_has_email": bool(o.email), "_has_phone": bool(o.phone)}) for o in orders]
    if trigger == "customer_created":
        customers = session.scalars(select(Customer).where(Customer.shop_id == shop_id, Customer.created_at >= since)
                                    .limit(PREVIEW_LIMIT))
        return [(c.id, {"_has_email": bool(c.email), "_has_phone": bool(c.phone)}) for c in customers]
    return []


def preview_flow(session: Session, shop_id: int, definition: dict, now: dt.datetime | None = None) -> dict:
    """How many would have entered, how many messages per step and coupons, over the last 30 days; sends nothing."""
    definition = _checked(definition)
    now = now or utcnow()
    since = now - dt.timedelta(days=PREVIEW_DAYS)
    customers = {c.id: c for c in session.scalars(select(Customer).where(Customer.shop_id == shop_id))} \
        if definition.get("audience") else {}
    entered, excluded = 0, 0
    messages: Counter = Counter()
    coupons = 0
    steps = definition["steps"]
    for customer_id, facts in _history(session, shop_id, definition["trigger"], since):
        customer = customers.get(customer_id)
        if customer is not None:
            facts = {**facts, "customer.orders_count": customer.orders_count, "customer.total_spent": customer.total_spent,
                     "customer.locale": customer.locale}
        if definition.get("audience") and not evaluate(definition["audience"], facts):
            excluded += 1
            continue
        entered += 1
        index, guard = 0, 0
        while index is not None and index < len(steps) and guard < 100:
            guard += 1
            step = steps[index]
            if facts.get("_bought") and "purchased" in (definition.get("exit") or []) and step["type"] != "wait":
                break  # a cart that was bought: assume the purchase came first (the preview cannot know the hour)
            if step["type"] == "send":
                if step["channel"] == "push" or facts.get(f"_has_{'email' if step['channel'] == 'email' else 'phone'}"):
                    messages[step["id"]] += 1
            elif step["type"] == "coupon":
                coupons += 1
            targets = step_targets(steps, index)
            index = targets[0] if step["type"] != "condition" or evaluate(step["if"], facts) else targets[-1]
    return {"days": PREVIEW_DAYS, "entered": entered, "excluded_by_audience": excluded,
            "messages": dict(messages), "messages_total": sum(messages.values()), "coupons": coupons}
