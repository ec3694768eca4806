"""Product alerts: customers who asked to hear when a product is back in stock or cheaper, and the signals for them.

A customer asks through the storefront or the API (`subscribe_to_product`); a product update from ingest that
brings the product back in stock or lowers its price (`announce_product_change`, called by
`signals.note_product`) emits one signal per customer who asked, and the ready flows turn those into messages.
A back-in-stock alert is one-shot; a price-drop alert stays and speaks again only below the last price it announced.
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.automations.detection import customer_for_contact
from app.automations.signals import emit_signal
from app.automations.trace import record_decision
from app.models import Customer, Product, utcnow
from app.models.product_alerts import PRODUCT_ALERT_KINDS, ProductAlert

# WooCommerce says instock/onbackorder, Shopify (through connectors/) in_stock
IN_STOCK = {"instock", "in_stock", "onbackorder"}


class ProductAlertRefused(ValueError):
    """The request names no known product, no kind we offer, or no way to reach the customer."""


def is_in_stock(stock_status: str | None) -> bool:
    return (stock_status or "").lower() in IN_STOCK


def is_back_in_stock(stock_before: str | None, stock_after: str | None) -> bool:
    return stock_before is not None and not is_in_stock(stock_before) and is_in_stock(stock_after)


def is_price_drop(price_before: Decimal | None, price_after: Decimal | None, reference: Decimal | None) -> bool:
    """Lower than before this update, and lower than the price the customer last heard about (if any)."""
    if price_before is None or price_after is None or not price_after < price_before:
        return False
    return reference is None or price_after < reference


def subscribe_to_product(session: Session, shop_id: int, *, product_platform_id: str, kind: str,
                         email: str | None = None, phone: str | None = None, customer_id: int | None = None,
                         source: str = "api", now: dt.datetime | None = None) -> ProductAlert:
    """Record (or re-open) a customer's wish to hear about a product; asking twice changes nothing."""
    if kind not in PRODUCT_ALERT_KINDS:
        raise ProductAlertRefused(f"kind must be one of {', '.join(PRODUCT_ALERT_KINDS)}")
    product = session.scalars(select(Product).where(Product.shop_id == shop_id,
                                                    Product.platform_id == str(product_platform_id))).first()
    if product is None:
        raise ProductAlertRefused(f"no product {product_platform_id}")
    if customer_id is not None and session.scalars(select(Customer.id).where(
            Customer.shop_id == shop_id, Customer.id == customer_id)).first() is None:
        raise ProductAlertRefused(f"no customer {customer_id}")
    customer = customer_for_contact(session, shop_id, customer_id, email.strip().lower() if email else None, phone)
    if customer is None:
        raise ProductAlertRefused("an email, a phone or a customer id is required")
    now = now or utcnow()
    alert = session.scalars(select(ProductAlert).where(
        ProductAlert.shop_id == shop_id, ProductAlert.product_id == product.id, ProductAlert.customer_id == customer.id,
        ProductAlert.kind == kind)).first()
    if alert is None:
        alert = ProductAlert(shop_id=shop_id, product_id=product.id, customer_id=customer.id, kind=kind, created_at=now)
        session.add(alert)
    if alert.status != "active":
        alert.status, alert.notified_at = "active", None
    alert.source = source[:32]
    alert.reference_price = product.price if kind == "price_drop" else None
    session.flush()
    record_decision(session, shop_id, "product_alert_requested", customer_id=customer.id, subject=("product", product.id),
                    now=now, kind=kind, source=alert.source)
    return alert


def cancel_product_alert(session: Session, shop_id: int, alert_id: int) -> bool:
    alert = session.scalars(select(ProductAlert).where(ProductAlert.shop_id == shop_id, ProductAlert.id == alert_id)).first()
    if alert is None or alert.status == "cancelled":
        return False
    alert.status = "cancelled"
    return True


def announce_product_change(session: Session, shop_id: int, product: Product, stock_before: str | None,
                            price_before: Decimal | None, now: dt.datetime | None = None) -> int:
    """One signal per waiting customer when `product` came back in stock or got cheaper; returns signals emitted."""
    back = is_back_in_stock(stock_before, product.stock_status)
    cheaper = price_before is not None and product.price < price_before
    if not (back or cheaper):
        return 0
    now = now or utcnow()
    kinds = [kind for kind, happened in (("back_in_stock", back), ("price_drop", cheaper and is_in_stock(product.stock_status)))
             if happened]
    if not kinds:
        return 0
    alerts = session.scalars(select(ProductAlert).where(
        ProductAlert.shop_id == shop_id, ProductAlert.product_id == product.id, ProductAlert.status == "active",
        ProductAlert.kind.in_(kinds)).order_by(ProductAlert.id)).all()
    stamp = int((product.platform_updated_at or now).timestamp())
    occurred_at = min(product.platform_updated_at or now, now)
    emitted = 0
    for alert in alerts:
        payload = {"product_id": product.id, "price": product.price, "currency": product.currency,
                   "stock_status": product.stock_status, "alert_id": alert.id}
        if alert.kind == "back_in_stock":
            signal_id = emit_signal(session, shop_id, "product_back_in_stock", dedupe_key=f"product_back_in_stock:{alert.id}:{stamp}",
                                    customer_id=alert.customer_id, subject=("product", product.id), payload=payload,
                                    occurred_at=occurred_at, now=now)
            alert.status, alert.notified_at = "notified", now
        else:
            if not is_price_drop(price_before, product.price, alert.reference_price):
                continue
            signal_id = emit_signal(session, shop_id, "product_price_dropped",
                                    dedupe_key=f"product_price_dropped:{alert.id}:{product.price}",
                                    customer_id=alert.customer_id, subject=("product", product.id),
                                    payload={**payload, "previous_price": alert.reference_price or price_before},
                                    occurred_at=occurred_at, now=now)
            alert.reference_price, alert.notified_at = product.price, now
        emitted += signal_id is not None
    return emitted
