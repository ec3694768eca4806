"""Exit conditions a caller attaches to a message: checked against live store state right before the send."""
from __future__ import annotations

from typing import Callable

from sqlalchemy.orm import Session

from app.automations.signals import is_paid
from app.models import Cart, Message, Order

ExitCheck = Callable[..., "str | None"]  # (session, message, **args) -> reason to stop, or None
_checks: dict[str, ExitCheck] = {}


class UnknownExitCondition(LookupError):
    pass


def exit_condition(name: str) -> Callable[[ExitCheck], ExitCheck]:
    def register(func: ExitCheck) -> ExitCheck:
        _checks[name] = func
        return func

    return register


def check_exits(session: Session, message: Message, conditions: list[dict]) -> list[str]:
    """Reasons to stop, one per condition met; an unknown condition name stops the message too (fail closed)."""
    reasons = []
    for condition in conditions:
        check = _checks.get(condition.get("name", ""))
        if check is None:
            reasons.append(f"unknown exit condition {condition.get('name')!r}")
            continue
        reason = check(session, message, **(condition.get("args") or {}))
        if reason:
            reasons.append(reason)
    return reasons


def validate(conditions: list[dict]) -> None:
    for condition in conditions:
        if condition.get("name") not in _checks:
            raise UnknownExitCondition(f"no exit condition named {condition.get('name')!r}")


@exit_condition("cart_converted")
def cart_converted(session: Session, message: Message, cart_id: int) -> str | None:
    cart = session.get(Cart, cart_id)
    if cart is None:
        return f"cart {cart_id} no longer exists"
    if cart.status in ("converted", "recovered") or cart.recovered_order_id is not None:
        return f"cart {cart_id} was bought meanwhile ({cart.status})"
    return None


@exit_condition("order_cancelled")
def order_cancelled(session: Session, message: Message, order_id: int) -> str | None:
    order = session.get(Order, order_id)
    if order is None:
        return f"order {order_id} no longer exists"
    if order.cancelled_at is not None or order.status == "cancelled":
        return f"order {order_id} was cancelled"
    return None


@exit_condition("order_paid")
def order_paid(session: Session, message: Message, order_id: int) -> str | None:
    order = session.get(Order, order_id)
    if order is None:
        return f"order {order_id} no longer exists"
    if is_paid(order):  # the same rule as the order_paid signal
        return f"order {order_id} was paid meanwhile"
    return None
