"""What the snippet captures: storefront events, the contact typed at checkout, the visitor's cart."""
from __future__ import annotations

import datetime as dt
from dataclasses import replace

from sqlalchemy import Connection, insert, select
from sqlalchemy.orm import Session

from connectors.records import StoreCart
from app.direct_insert import DirectInsert
from app.models import Cart, Customer, Order, StorefrontEvent, StorefrontVisitor, utcnow
from app.models.storefront import STOREFRONT_EVENT_KINDS
from app.store.apply import apply_cart, cart_status_after_purchase
from app.storefront import validation as v

events_table = StorefrontEvent.__table__
# Carts still open to the shopper ("idle": past the threshold, not ours to remind; new activity reopens it).
OPEN_CART_STATUSES = ("active", "abandoned", "idle")
CLOCK_SKEW = dt.timedelta(days=1)
CLOCK_AHEAD = dt.timedelta(minutes=5)
OPTIONAL_TEXTS = (("title", 512), ("referrer", 2048), ("currency", 3))


def parse_events(raw_events: list, visitor_id: str, now: dt.datetime) -> tuple[list[dict], list[dict]]:
    """Split a batch into rows to store and per-event problems; one bad event does not cost the others."""
    rows, problems = [], []
    for index, event in enumerate(raw_events):
        try:
            rows.append(_event_row(event, index, visitor_id, now))
        except v.InvalidField as exc:
            problems.append({"index": index, "field": exc.field, "message": exc.expected})
    return rows, problems


def _event_row(event, index: int, visitor_id: str, now: dt.datetime) -> dict:
    path = f"events[{index}]"
    if not isinstance(event, dict):
        raise v.InvalidField(path, "must be an object")
    kind = event.get("type")
    if kind not in STOREFRONT_EVENT_KINDS:
        raise v.InvalidField(f"{path}.type", f"must be one of {', '.join(STOREFRONT_EVENT_KINDS)}")
    page = v.url(event, "url", required=True, path=f"{path}.url")
    product = v.identifier(event, "product_id", path=f"{path}.product_id")
    if kind in ("product_view", "add_to_cart") and product is None:
        raise v.InvalidField(f"{path}.product_id", f"is required for {kind}")
    data = {}
    for field, length in OPTIONAL_TEXTS:
        if field in event:
            value = v.text(event, field, length, path=f"{path}.{field}")
            if value is not None:
                data[field] = value
    if "variant_id" in event:
        variant = v.identifier(event, "variant_id", path=f"{path}.variant_id")
        if variant is not None:
            data["variant_id"] = variant
    if "quantity" in event:
        quantity = v.whole_number(event, "quantity", 1, 10_000, path=f"{path}.quantity")
        if quantity is not None:
            data["quantity"] = quantity
    price = event.get("price")
    if price is not None:
        if isinstance(price, bool) or not isinstance(price, (int, str)) or not str(price).lstrip("-").isdigit() or len(str(price)) > 15:
            raise v.InvalidField(f"{path}.price", "must be an amount in minor units (a whole number)")
        data["price_minor"] = int(price)
    occurred = now
    ts = event.get("ts")
    if ts is not None:
        if isinstance(ts, bool) or not isinstance(ts, (int, float)):
            raise v.InvalidField(f"{path}.ts", "must be milliseconds since 1970 (Date.now())")
        try:
            claimed = dt.datetime.fromtimestamp(ts / 1000, dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise v.InvalidField(f"{path}.ts", "must be milliseconds since 1970 (Date.now())") from None
        # The browser's clock is trusted only within a day of ours; a wrong clock does not lose the event.
        occurred = claimed if now - CLOCK_SKEW <= claimed <= now + CLOCK_AHEAD else now
    return dict(visitor_id=visitor_id, kind=kind, url=page, product_platform_id=product, data=data,
                occurred_at=occurred, received_at=now)


EVENT_COLUMNS = ("shop_id", "visitor_id", "kind", "url", "product_platform_id", "data", "occurred_at", "received_at")


# The events INSERT, compiled once per dialect and run as one executemany on the driver: at a handful of rows a
# request, building and executing a Core statement cost more than the insert itself (cProfile of `/s/events`).
_EVENT_INSERT = DirectInsert(insert(events_table), EVENT_COLUMNS)


class EventBatch:
    """Rows converted for the driver before the transaction begins, so the writer lock is held only for the insert."""

    def __init__(self, dialect, shop_id: int, rows: list[dict]):
        self.dialect = dialect
        self.sql, self.params = _EVENT_INSERT.parameters(dialect, ({**row, "shop_id": shop_id} for row in rows))

    def insert(self, driver_connection) -> int:
        """Insert on the driver's connection, in its open transaction: every row carries its shop_id, no tenant context."""
        return _EVENT_INSERT.execute_many(self.dialect, driver_connection, self.sql, self.params)


def store_events(conn: Connection, shop_id: int, rows: list[dict]) -> int:
    """Insert events in `conn`'s transaction."""
    return EventBatch(conn.dialect, shop_id, rows).insert(conn.connection.driver_connection)


def visitor(session: Session, shop_id: int, visitor_id: str) -> StorefrontVisitor:
    row = session.scalars(select(StorefrontVisitor).where(StorefrontVisitor.visitor_id == visitor_id)).first()
    if row is None:
        row = StorefrontVisitor(shop_id=shop_id, visitor_id=visitor_id)
        session.add(row)
        session.flush()
    return row


def customer_for_contact(session: Session, shop_id: int, email: str | None, phone: str | None) -> Customer:
    """The customer with this email (else this phone); a new one, known only by the contact, when there is none."""
    customer = None
    if email:
        customer = session.scalars(select(Customer).where(Customer.email == email).order_by(Customer.id)).first()
    if customer is None and phone:
        customer = session.scalars(select(Customer).where(Customer.phone == phone).order_by(Customer.id)).first()
    if customer is None:
        customer = Customer(shop_id=shop_id, email=email, phone=phone)
        session.add(customer)
        session.flush()
    elif phone and not customer.phone:
        customer.phone = phone
    return customer


def link_contact(session: Session, shop_id: int, visitor_id: str, email: str | None, phone: str | None) -> None:
    """Tie the anonymous visitor, and their open carts, to the customer who owns this email or phone."""
    customer = customer_for_contact(session, shop_id, email, phone)
    seen = visitor(session, shop_id, visitor_id)
    seen.customer_id = customer.id
    seen.contact_at = utcnow()
    for cart in session.scalars(select(Cart).where(Cart.visitor_id == visitor_id, Cart.status.in_(OPEN_CART_STATUSES))):
        cart.customer_id = customer.id
        cart.email = email or cart.email
        cart.phone = phone or cart.phone


SNIPPET_TOKEN_PREFIX = "sc-"


def _open_snippet_cart_token(session: Session, visitor_id: str, base: str) -> str:
    """A browser's carts that have no platform id are numbered: once one is bought, the next cart is a new row."""
    held = session.scalars(select(Cart).where(Cart.visitor_id == visitor_id, Cart.platform_token.startswith(base, autoescape=True))
                           .order_by(Cart.id.desc())).all()
    if not held or held[0].status in OPEN_CART_STATUSES:
        return held[0].platform_token if held else base
    return f"{base}-{len(held) + 1}"


def sync_cart(session: Session, shop_id: int, visitor_id: str, record: StoreCart) -> Cart | None:
    """Store the visitor's cart through the same newer-wins path as platform carts."""
    if record.token.startswith(SNIPPET_TOKEN_PREFIX):
        record = replace(record, token=_open_snippet_cart_token(session, visitor_id, record.token))
    held = session.scalars(select(Cart).where(Cart.platform_token == record.token)).first()
    if held is None and not record.lines:
        return None  # an empty cart we never saw is nothing to recover
    seen = visitor(session, shop_id, visitor_id)
    cart = apply_cart(session, shop_id, record)
    if cart is None:
        return None
    if held is None:
        cart.source = "snippet"
    cart.visitor_id = visitor_id
    if seen.customer_id is not None:
        customer = session.get(Customer, seen.customer_id)
        cart.customer_id = seen.customer_id
        cart.email = cart.email or (customer.email if customer else None)
        cart.phone = cart.phone or (customer.phone if customer else None)
    return cart


def complete_carts(session: Session, visitor_id: str, order_platform_id: str) -> int:
    """The visitor reached the shop's order-received page: their open carts were bought, not abandoned.

    The order itself arrives by webhook or polling; when it is already here, the cart points at it.
    """
    order = session.scalars(select(Order).where(Order.platform_id == order_platform_id)).first()
    carts = session.scalars(select(Cart).where(Cart.visitor_id == visitor_id, Cart.status.in_(OPEN_CART_STATUSES))).all()
    for cart in carts:
        cart.status = cart_status_after_purchase(cart)
        cart.recovered_order_id = order.id if order is not None else cart.recovered_order_id
    return len(carts)
