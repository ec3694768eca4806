"""What a flow's message and conditions may read about a run's subject, beyond the cart: product, order, signal."""
from __future__ import annotations

from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Cart, CartLine, Coupon, FlowRun, Order, Product, Signal


def message_details(session: Session, shop_id: int, context: dict, *,
                    cart_lines: Callable[[int], list[CartLine]] | None = None) -> dict:
    """Template variables for the run's subject, as plain JSON: the signal's payload (ids, amounts, statuses),
    the product (title, link, price) or the order (number, total). `cart_lines(cart_id)`, when given, hands the
    cart's lines (in id order) from a read made once for a batch of runs."""
    details: dict = {"signal": dict(context.get("signal") or {})}
    subject = context.get("subject") or {}
    if subject.get("type") == "product" and subject.get("id"):
        product = session.get(Product, subject["id"])
        if product is not None:
            details["product"] = {"title": product.title, "url": product.url, "image_url": product.image_url,
                                  "price": str(product.price), "currency": product.currency,
                                  "in_stock": (product.stock_status or "").lower() in ("instock", "in_stock", "onbackorder")}
    elif subject.get("type") == "order" and subject.get("id"):
        order = session.get(Order, subject["id"])
        if order is not None:
            details["order"] = {"number": order.number or order.platform_id, "total": str(order.total),
                                "currency": order.currency}
    elif subject.get("type") == "cart" and subject.get("id"):
        cart = session.get(Cart, subject["id"])
        if cart is not None:
            lines = cart_lines(cart.id) if cart_lines is not None else session.scalars(select(CartLine).where(
                CartLine.shop_id == cart.shop_id, CartLine.cart_id == cart.id).order_by(CartLine.id)).all()
            details["cart"] = {"total": str(cart.total), "currency": cart.currency,
                               "item_count": sum(line.quantity for line in lines),
                               "items": [{"name": line.name, "quantity": line.quantity, "unit_price": str(line.unit_price)}
                                         for line in lines]}
    if context.get("coupon_code"):
        coupon = session.scalars(select(Coupon).where(Coupon.shop_id == shop_id, Coupon.code == context["coupon_code"]).limit(1)).first()
        if coupon is not None:
            details["coupon"] = {"code": coupon.code, "percent_off": _plain(coupon.percent_off),
                                 "amount_off": _plain(coupon.amount_off), "currency": coupon.currency,
                                 "expires_at": coupon.expires_at.isoformat(),
                                 "valid_days": max(1, round((coupon.expires_at - coupon.created_at).total_seconds() / 86_400))}
    return details


def _plain(amount):
    """10.0000 -> "10", 12.5000 -> "12.5": amounts as the customer reads them."""
    if amount is None:
        return None
    return format(amount.normalize(), "f")


def custom_events_since_start(session: Session, shop_id: int, customer_id: int, run_id: int) -> list[str]:
    """Names of the custom events (via the API) this customer sent since the run started, e.g. `service_booked`."""
    started = session.scalar(select(FlowRun.started_at).where(FlowRun.shop_id == shop_id, FlowRun.id == run_id))
    if started is None:
        return []
    payloads = session.scalars(select(Signal.payload).where(
        Signal.shop_id == shop_id, Signal.customer_id == customer_id, Signal.kind == "custom_event",
        Signal.occurred_at >= started)).all()
    return sorted({str(p.get("event")) for p in payloads if p and p.get("event")})
