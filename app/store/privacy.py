"""A customer's privacy rights over what we hold: export all of it, or erase it from every table."""
from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from app.models import (
    Cart,
    Consent,
    Coupon,
    Customer,
    CustomerTag,
    DataExport,
    FlowRun,
    InboundEvent,
    Message,
    Order,
    OrderLine,
    PushSubscription,
    ReturnRequest,
    Segment,
    SegmentMember,
    Shipment,
    Shop,
    Suppression,
    Tag,
    TrackingEvent,
    utcnow,
)
from app.models.base import Base


def _subject_filters(email: str | None, phone: str | None):
    email = email.lower() if email else None
    return email, phone


def _matching_customers(session: Session, shop_id: int, platform_id: str | None, email: str | None, phone: str | None) -> list[Customer]:
    conditions = []
    if platform_id:
        conditions.append(Customer.platform_id == platform_id)
    if email:
        conditions.append(Customer.email == email)
    if phone:
        conditions.append(Customer.phone == phone)
    if not conditions:
        return []
    return list(session.scalars(select(Customer).where(Customer.shop_id == shop_id, or_(*conditions))))


def _owned(model, shop_id: int, customer_ids: list[int], email: str | None, phone: str | None,
           email_column=None, phone_column=None):
    conditions = [model.customer_id.in_(customer_ids)] if customer_ids else []
    if email is not None and email_column is not None:
        conditions.append(email_column == email)
    if phone is not None and phone_column is not None:
        conditions.append(phone_column == phone)
    if not conditions:
        return None
    return select(model).where(model.shop_id == shop_id, or_(*conditions))


def export_customer_data(session: Session, shop_id: int, *, platform_id: str | None, email: str | None,
                         phone: str | None, order_platform_ids: list[str] = ()) -> dict[str, list[dict]]:
    """Every row we hold about the customer, as plain JSON-ready dicts, table by table."""
    email, phone = _subject_filters(email, phone)
    customers = _matching_customers(session, shop_id, platform_id, email, phone)
    ids = [c.id for c in customers]
    orders = _rows(session, _owned(Order, shop_id, ids, email, phone, Order.email, Order.phone))
    if order_platform_ids:
        orders += [o for o in session.scalars(select(Order).where(Order.shop_id == shop_id, Order.platform_id.in_(order_platform_ids)))
                   if o not in orders]
    order_ids = [o.id for o in orders]
    carts = _rows(session, _owned(Cart, shop_id, ids, email, phone, Cart.email, Cart.phone))
    messages = _rows(session, _owned(Message, shop_id, ids, email, phone, Message.recipient, Message.recipient))
    shipments = list(session.scalars(select(Shipment).where(Shipment.shop_id == shop_id, Shipment.order_id.in_(order_ids)))) if order_ids else []
    tag_names = dict(session.execute(select(Tag.id, Tag.name).where(Tag.shop_id == shop_id)).all())
    return {
        "customers": [_plain(c) for c in customers],
        "orders": [_plain(o) for o in orders],
        "order_lines": [_plain(line) for line in session.scalars(
            select(OrderLine).where(OrderLine.shop_id == shop_id, OrderLine.order_id.in_(order_ids)))] if order_ids else [],
        "carts": [_plain(c) for c in carts],
        "consents": [_plain(c) for c in session.scalars(select(Consent).where(Consent.shop_id == shop_id, Consent.customer_id.in_(ids)))],
        "messages": [_plain(m) for m in messages],
        "push_subscriptions": [_plain(p) for p in session.scalars(
            select(PushSubscription).where(PushSubscription.shop_id == shop_id, PushSubscription.customer_id.in_(ids)))],
        "coupons": [_plain(c) for c in session.scalars(select(Coupon).where(Coupon.shop_id == shop_id, Coupon.customer_id.in_(ids)))],
        "tags": [{"customer_id": ct.customer_id, "tag": tag_names.get(ct.tag_id)} for ct in session.scalars(
            select(CustomerTag).where(CustomerTag.shop_id == shop_id, CustomerTag.customer_id.in_(ids)))],
        "flow_runs": [_plain(r) for r in session.scalars(select(FlowRun).where(FlowRun.shop_id == shop_id, FlowRun.customer_id.in_(ids)))],
        "segments": [{"customer_id": member.customer_id, "segment": name, "entered_at": member.entered_at.isoformat()}
                     for member, name in session.execute(select(SegmentMember, Segment.name).join(
                         Segment, Segment.id == SegmentMember.segment_id).where(
                         SegmentMember.shop_id == shop_id, SegmentMember.customer_id.in_(ids)))],
        "shipments": [_plain(s, skip=("label",)) for s in shipments],
        "tracking_events": [_plain(t) for t in session.scalars(select(TrackingEvent).where(
            TrackingEvent.shop_id == shop_id, TrackingEvent.shipment_id.in_([s.id for s in shipments])))] if shipments else [],
        "returns": [_plain(r) for r in session.scalars(select(ReturnRequest).where(
            ReturnRequest.shop_id == shop_id, ReturnRequest.order_id.in_(order_ids)))] if order_ids else [],
        "suppressions": [_plain(s) for s in session.scalars(select(Suppression).where(
            Suppression.shop_id == shop_id, Suppression.address.in_([a for a in (email, phone) if a])))],
    }


def _rows(session: Session, query) -> list:
    return list(session.scalars(query)) if query is not None else []


def _plain(row, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {column.key: _json_value(getattr(row, column.key)) for column in row.__table__.columns
            if column.key not in skip and not isinstance(getattr(row, column.key), bytes)}


def _json_value(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def hashed_address(address: str) -> str:
    """What a suppression keeps after erasure: enough to keep not contacting the address, not the address."""
    return "sha256:" + hashlib.sha256(address.strip().lower().encode()).hexdigest()


def redact_customer(session: Session, shop_id: int, *, platform_id: str | None, email: str | None,
                    phone: str | None, order_platform_ids: list[str] = ()) -> dict[str, int]:
    """Erase the customer's personal data from every table; orders stay for the shop's books, anonymised."""
    email, phone = _subject_filters(email, phone)
    customers = _matching_customers(session, shop_id, platform_id, email, phone)
    ids = [c.id for c in customers]
    counts: dict[str, int] = {}

    order_query = _owned(Order, shop_id, ids, email, phone, Order.email, Order.phone)
    orders = _rows(session, order_query)
    if order_platform_ids:
        orders += [o for o in session.scalars(select(Order).where(Order.shop_id == shop_id, Order.platform_id.in_(order_platform_ids)))
                   if o not in orders]
    order_ids = [o.id for o in orders]
    for order in orders:
        order.email = order.phone = None
        order.shipping_address = order.billing_address = None
        order.customer_id = None
    counts["orders_anonymised"] = len(orders)

    if order_ids:
        shipment_ids = list(session.scalars(select(Shipment.id).where(Shipment.shop_id == shop_id, Shipment.order_id.in_(order_ids))))
        if shipment_ids:
            counts["tracking_events"] = session.execute(delete(TrackingEvent).where(
                TrackingEvent.shop_id == shop_id, TrackingEvent.shipment_id.in_(shipment_ids))).rowcount
            session.execute(update(Shipment).where(Shipment.shop_id == shop_id, Shipment.id.in_(shipment_ids))
                            .values(label=None, tracking_numbers=[], status_raw=None))

    message_query = _owned(Message, shop_id, ids, email, phone, Message.recipient, Message.recipient)
    if message_query is not None:
        message_ids = [m.id for m in session.scalars(message_query)]
        counts["messages"] = session.execute(delete(Message).where(Message.shop_id == shop_id, Message.id.in_(message_ids))).rowcount

    cart_query = _owned(Cart, shop_id, ids, email, phone, Cart.email, Cart.phone)
    if cart_query is not None:
        cart_ids = [c.id for c in session.scalars(cart_query)]
        session.execute(delete(Coupon).where(Coupon.shop_id == shop_id, Coupon.cart_id.in_(cart_ids)))
        counts["carts"] = session.execute(delete(Cart).where(Cart.shop_id == shop_id, Cart.id.in_(cart_ids))).rowcount

    for address in (a for a in (email, phone) if a):
        session.execute(update(Suppression).where(Suppression.shop_id == shop_id, Suppression.address == address)
                        .values(address=hashed_address(address)))
        counts["inbound_events"] = counts.get("inbound_events", 0) + _erase_raw_events_mentioning(session, shop_id, address)

    counts["customers"] = session.execute(delete(Customer).where(Customer.shop_id == shop_id, Customer.id.in_(ids))).rowcount if ids else 0
    for export in session.scalars(select(DataExport).where(DataExport.shop_id == shop_id)):
        subject = export.subject or {}
        if (platform_id and subject.get("platform_id") == platform_id) or (email and subject.get("email") == email) \
                or (phone and subject.get("phone") == phone):
            session.delete(export)
    session.flush()
    return counts


def _erase_raw_events_mentioning(session: Session, shop_id: int, needle: str, batch: int = 500) -> int:
    """Raw webhook bodies carry the customer's data too; scan this shop's events in batches and drop matches."""
    erased, last_id = 0, 0
    needle_bytes = needle.lower().encode()
    while True:
        rows = session.execute(
            select(InboundEvent.id, InboundEvent.body).where(InboundEvent.shop_id == shop_id, InboundEvent.id > last_id)
            .order_by(InboundEvent.id).limit(batch)
        ).all()
        if not rows:
            return erased
        hits = [event_id for event_id, body in rows if needle_bytes in bytes(body).lower()]
        if hits:
            erased += session.execute(delete(InboundEvent).where(InboundEvent.id.in_(hits))).rowcount
        last_id = rows[-1][0]


def erase_shop(session: Session, shop_id: int) -> bool:
    """Remove the shop and, through the foreign keys, every row that belongs to it."""
    shop = session.get(Shop, shop_id)
    if shop is None:
        return False
    session.delete(shop)
    session.flush()
    return True


def tables_holding_shop_data() -> list[str]:
    return [t.name for t in Base.metadata.sorted_tables if "shop_id" in t.columns]
