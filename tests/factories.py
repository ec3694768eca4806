"""Builders for rows the tests need, with just enough fields filled in."""
from __future__ import annotations

import secrets
from decimal import Decimal

from app.models import Customer, Order, Shop


def make_shop(session, domain: str | None = None, platform: str = "shopify", **fields) -> Shop:
    shop = Shop(
        platform=platform,
        domain=domain or f"shop-{secrets.token_hex(3)}.myshopify.com",
        webhook_token=secrets.token_urlsafe(24),
        public_key=secrets.token_urlsafe(16),
        status="active",
        **fields,
    )
    session.add(shop)
    session.flush()
    return shop


def make_customer(session, shop: Shop, email: str, **fields) -> Customer:
    customer = Customer(shop_id=shop.id, email=email, platform_id=fields.pop("platform_id", secrets.token_hex(4)), **fields)
    session.add(customer)
    session.flush()
    return customer


def make_order(session, shop: Shop, customer: Customer | None = None, total: str = "100.00", currency: str = "PLN", **fields) -> Order:
    order = Order(
        shop_id=shop.id,
        platform_id=fields.pop("platform_id", secrets.token_hex(4)),
        customer_id=customer.id if customer else None,
        email=customer.email if customer else None,
        total=Decimal(total),
        currency=currency,
        **fields,
    )
    session.add(order)
    session.flush()
    return order
