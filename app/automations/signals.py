"""Signals: facts about a shop (order placed, cart abandoned...) written once, routed to flows later.

A signal carries ids, amounts and statuses only. Anything that could identify a person (email, phone,
names, addresses) is refused here, so that erasing a customer leaves nothing behind.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from app.models import Signal, utcnow

SIGNAL_KINDS = (
    "order_placed", "order_paid", "order_cancelled", "refund_created", "return_requested",
    "cart_updated", "cart_abandoned", "customer_created", "customer_updated", "consent_changed",
    "fulfillment_created", "shipment_status_changed", "tag_added", "custom_event", "birthday",
    "browse_abandoned", "product_back_in_stock", "product_price_dropped", "subscriber_inactive", "return_received",
    "tag_removed", "segment_entered", "segment_left",
)
# A record older than this when it reaches us (an initial import, a late backfill) is history, not news:
# no flow should greet a customer for an order placed last year.
SIGNAL_MAX_AGE = dt.timedelta(days=7)
_PERSONAL_KEYS = {"email", "phone", "first_name", "last_name", "name", "address", "shipping_address",
                  "billing_address", "recipient", "ip", "ip_address"}
# "authorized" (Shopify: the card payment is authorized, the shop captures it later): the customer's part is done,
# so no "finish your payment" may reach them and flows that start on payment start now.
PAID_STATUSES = {"paid", "partially_refunded", "refunded", "authorized"}


class PersonalDataInSignal(ValueError):
    """A payload key that would carry personal data into a table erasure does not clean."""


def cause_chain(payload: dict | None) -> list[int]:
    """The flows, first to last, whose runs led to a signal (a tag or segment change made by a flow's tag step):
    its `caused_by`, or for a signal written before that field, the one flow it names."""
    payload = payload or {}
    chain = [flow_id for flow_id in payload.get("caused_by") or [] if isinstance(flow_id, int)]
    if payload.get("source") == "flow" and isinstance(payload.get("flow_id"), int) and payload["flow_id"] not in chain:
        chain.append(payload["flow_id"])
    return chain


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _insert_ignoring_duplicates(session: Session):
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert(Signal.__table__)


def emit_signal(session: Session, shop_id: int, kind: str, *, dedupe_key: str, customer_id: int | None = None,
                subject: tuple[str, int] | None = None, payload: dict | None = None,
                occurred_at: dt.datetime | None = None, now: dt.datetime | None = None) -> int | None:
    """Record a signal in the caller's transaction; its id, or None when it is a duplicate or too old to matter.

    `dedupe_key` names the fact (e.g. `order_paid:<order id>`); recording the same fact twice is a no-op.
    """
    now = now or utcnow()
    values = _signal_row(shop_id, kind, dedupe_key, customer_id, subject, payload, occurred_at or now, now)
    if values is None:
        return None
    statement = _insert_ignoring_duplicates(session).values(**values).on_conflict_do_nothing(
        index_elements=["shop_id", "dedupe_key"]).returning(Signal.__table__.c.id)
    return session.execute(statement).scalar_one_or_none()


@dataclass(frozen=True)
class SignalFact:
    """One fact for `emit_signals`: the arguments `emit_signal` takes."""

    shop_id: int
    kind: str
    dedupe_key: str
    customer_id: int | None = None
    subject: tuple[str, int] | None = None
    payload: dict | None = None


def emit_signals(session: Session, facts: list[SignalFact], now: dt.datetime | None = None) -> None:
    """Record many signals at once (one executemany, same checks and dedupe keys as `emit_signal`).

    For a batch of work, such as the "shipped" signals of a 500-label print: one statement, not 500.
    """
    now = now or utcnow()
    rows = [row for fact in facts if (row := _signal_row(fact.shop_id, fact.kind, fact.dedupe_key, fact.customer_id,
                                                         fact.subject, fact.payload, now, now)) is not None]
    if rows:
        session.execute(_insert_ignoring_duplicates(session).on_conflict_do_nothing(
            index_elements=["shop_id", "dedupe_key"]), rows)


def _signal_row(shop_id: int, kind: str, dedupe_key: str, customer_id: int | None, subject: tuple[str, int] | None,
                payload: dict | None, occurred_at: dt.datetime, now: dt.datetime) -> dict | None:
    """The row to insert, or None when the fact is too old to matter; refuses unknown kinds and personal data."""
    if kind not in SIGNAL_KINDS:
        raise ValueError(f"unknown signal kind {kind!r}")
    payload = _plain(payload or {})
    leaked = _PERSONAL_KEYS & set(payload)
    if leaked:
        raise PersonalDataInSignal(f"signal payload may not carry {sorted(leaked)}")
    if now - occurred_at > SIGNAL_MAX_AGE:
        return None
    return dict(shop_id=shop_id, kind=kind, customer_id=customer_id, subject_type=subject[0] if subject else None,
                subject_id=subject[1] if subject else None, payload=payload, dedupe_key=dedupe_key[:255],
                occurred_at=occurred_at, created_at=now, routed_at=None)


# --- the hooks app/store/apply.py calls: each compares the row before and after an upsert ----------------

def order_state(order) -> tuple:
    """What `note_order` compares: taken after the row was found or created, before it is overwritten."""
    return (order.id is not None, is_paid(order), order.cancelled_at is not None)


def is_paid(order) -> bool:
    return order.paid_at is not None or (order.financial_status or "").lower() in PAID_STATUSES


def _order_payload(order) -> dict:
    return {"order_id": order.id, "total": order.total, "currency": order.currency, "status": order.status,
            "financial_status": order.financial_status, "payment_method": order.payment_method}


def note_order(session: Session, shop_id: int, order, before: tuple) -> None:
    existed, was_paid, was_cancelled = before
    subject = ("order", order.id)
    if not existed:
        emit_signal(session, shop_id, "order_placed", dedupe_key=f"order_placed:{order.id}", customer_id=order.customer_id,
                    subject=subject, payload=_order_payload(order), occurred_at=order.placed_at)
        _remember_last_order(session, order)
    if is_paid(order) and not was_paid:
        emit_signal(session, shop_id, "order_paid", dedupe_key=f"order_paid:{order.id}", customer_id=order.customer_id,
                    subject=subject, payload=_order_payload(order), occurred_at=order.paid_at or order.platform_updated_at)
    if order.cancelled_at is not None and not was_cancelled:
        emit_signal(session, shop_id, "order_cancelled", dedupe_key=f"order_cancelled:{order.id}",
                    customer_id=order.customer_id, subject=subject, payload=_order_payload(order),
                    occurred_at=order.cancelled_at)


def _remember_last_order(session: Session, order) -> None:
    from app.models import Customer

    if order.customer_id is None or order.placed_at is None:
        return
    customer = session.get(Customer, order.customer_id)
    if customer is not None and (customer.last_order_at is None or customer.last_order_at < order.placed_at):
        customer.last_order_at = order.placed_at


def cart_state(cart) -> tuple:
    return (cart.id is not None, cart.last_activity_at)


def note_cart(session: Session, shop_id: int, cart, before: tuple) -> None:
    existed, held_activity = before
    if existed and held_activity is not None and cart.last_activity_at <= held_activity:
        return
    if cart.status == "idle":
        cart.status = "active"  # new activity: the abandonment clock starts again
    emit_signal(session, shop_id, "cart_updated", dedupe_key=f"cart_updated:{cart.id}:{int(cart.last_activity_at.timestamp())}",
                customer_id=cart.customer_id, subject=("cart", cart.id),
                payload={"cart_id": cart.id, "total": cart.total, "currency": cart.currency, "status": cart.status},
                occurred_at=cart.last_activity_at)


def note_customer(session: Session, shop_id: int, customer, existed: bool) -> None:
    kind = "customer_updated" if existed else "customer_created"
    stamp = int((customer.platform_updated_at or utcnow()).timestamp())
    emit_signal(session, shop_id, kind, dedupe_key=f"{kind}:{customer.id}:{stamp}", customer_id=customer.id,
                subject=("customer", customer.id), payload={"customer_id": customer.id, "orders_count": customer.orders_count},
                occurred_at=customer.platform_updated_at)


def note_consent(session: Session, shop_id: int, consent) -> None:
    session.flush()
    emit_signal(session, shop_id, "consent_changed", dedupe_key=f"consent_changed:{consent.id}",
                customer_id=consent.customer_id, subject=("customer", consent.customer_id),
                payload={"channel": consent.channel, "state": consent.state, "source": consent.source},
                occurred_at=consent.recorded_at)


def note_refund(session: Session, shop_id: int, order, refund_platform_id: str, amount, currency: str,
                occurred_at: dt.datetime | None) -> None:
    emit_signal(session, shop_id, "refund_created", dedupe_key=f"refund_created:{refund_platform_id}",
                customer_id=order.customer_id, subject=("order", order.id),
                payload={"order_id": order.id, "amount": amount, "currency": currency,
                         "financial_status": order.financial_status}, occurred_at=occurred_at)


# A platform return in one of these states has reached the shop (Shopify closes a return once it is processed).
RETURN_RECEIVED_STATUSES = {"closed", "received", "returned", "completed", "processed"}


def note_return(session: Session, shop_id: int, held, existed: bool, status_before: str | None = None) -> None:
    session.flush()
    from app.models import Order

    order = session.get(Order, held.order_id) if held.order_id else None
    who = dict(customer_id=order.customer_id if order else None,
               subject=("order", held.order_id) if held.order_id else None,
               payload={"return_id": held.id, "order_id": held.order_id, "status": held.status},
               occurred_at=held.platform_updated_at)
    if not existed:
        emit_signal(session, shop_id, "return_requested", dedupe_key=f"return_requested:{held.id}", **who)
    if held.status in RETURN_RECEIVED_STATUSES and status_before not in RETURN_RECEIVED_STATUSES:
        emit_signal(session, shop_id, "return_received", dedupe_key=f"return_received:{held.id}", **who)


def product_state(product) -> tuple:
    """What `note_product` compares: taken before the incoming record overwrites the row."""
    return (product.id is not None, product.stock_status, product.price)


def note_product(session: Session, shop_id: int, product, before: tuple) -> None:
    """Back in stock, or a lower price: one signal per customer who asked to hear about it (app.automations.product_alerts)."""
    from app.automations.product_alerts import announce_product_change

    existed, stock_before, price_before = before
    if existed:
        announce_product_change(session, shop_id, product, stock_before, price_before)
