"""Apply platform records to our copy of the shop; a record older than what we hold changes nothing."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from connectors.records import (
    Address,
    MarketingConsent,
    Money,
    StoreCart,
    StoreCustomer,
    StoreOrder,
    StoreProduct,
    StoreRefund,
)
from app.models import Cart, CartLine, Consent, Customer, Order, OrderLine, Product, ReturnRequest, utcnow
from app.automations import signals


def is_stale(held: dt.datetime | None, incoming: dt.datetime | None) -> bool:
    """True when the incoming version is not newer than the one we hold (late or duplicate delivery)."""
    return held is not None and incoming is not None and incoming <= held


def _amount(money: Money | None) -> Decimal:
    return money.amount if money is not None else Decimal("0")


def _address(address: Address | None) -> dict | None:
    return None if address is None else {k: v for k, v in vars(address).items() if v not in (None, "")}


def _row_to_update(session: Session, model, shop_id: int, key_column, key: str, incoming_updated_at: dt.datetime | None, **defaults):
    """The held row to overwrite (a new one if none), or None when the incoming version is stale."""
    row = session.scalars(select(model).where(model.shop_id == shop_id, key_column == key)).first()
    if row is not None and is_stale(row.platform_updated_at, incoming_updated_at):
        return None
    if row is None:
        row = model(shop_id=shop_id, **{key_column.key: key}, **defaults)
        session.add(row)
    return row


def customer_by_platform_id(session: Session, shop_id: int, platform_id: str | None) -> Customer | None:
    if not platform_id:
        return None
    return session.scalars(select(Customer).where(Customer.shop_id == shop_id, Customer.platform_id == platform_id)).first()


def apply_customer(session: Session, shop_id: int, record: StoreCustomer) -> Customer | None:
    """Upsert a customer and record any consent change; returns None when the record was stale."""
    customer = _row_to_update(session, Customer, shop_id, Customer.platform_id, record.platform_id, record.updated_at)
    if customer is None:
        return None
    existed = customer.id is not None
    customer.email = record.email.lower() if record.email else None
    customer.phone = record.phone
    customer.first_name, customer.last_name = record.first_name, record.last_name
    customer.locale = (record.locale or "")[:2] or customer.locale
    customer.orders_count = record.orders_count
    if record.total_spent is not None:
        customer.total_spent, customer.currency = record.total_spent.amount, record.total_spent.currency
    customer.platform_updated_at = record.updated_at
    session.flush()
    signals.note_customer(session, shop_id, customer, existed)
    for consent in record.consents:
        record_platform_consent(session, shop_id, customer.id, consent)
    return customer


def record_platform_consent(session: Session, shop_id: int, customer_id: int, consent: MarketingConsent) -> bool:
    """Add a consent row when the platform reports a state different from the newest one we hold."""
    newest = session.scalars(
        select(Consent).where(Consent.shop_id == shop_id, Consent.customer_id == customer_id, Consent.channel == consent.channel)
        .order_by(Consent.recorded_at.desc(), Consent.id.desc()).limit(1)
    ).first()
    if newest is not None and newest.state == consent.state:
        return False
    if newest is not None and consent.updated_at is not None and consent.updated_at < newest.recorded_at:
        return False
    row = Consent(
        shop_id=shop_id, customer_id=customer_id, channel=consent.channel, state=consent.state,
        source=f"platform:{consent.source or 'unknown'}"[:32],
        form_text_version=consent.opt_in_level, recorded_at=consent.updated_at or utcnow(),
    )
    session.add(row)
    signals.note_consent(session, shop_id, row)
    return True


def apply_order(session: Session, shop_id: int, record: StoreOrder) -> Order | None:
    """Upsert an order and its lines; returns None when the record was stale."""
    order = _row_to_update(session, Order, shop_id, Order.platform_id, record.platform_id, record.updated_at,
                           currency=record.currency)
    if order is None:
        return None
    before = signals.order_state(order)
    customer = customer_by_platform_id(session, shop_id, record.customer_platform_id)
    order.customer_id = customer.id if customer else None
    order.number = record.number
    order.email = record.email.lower() if record.email else None
    order.phone = record.phone
    order.status = record.status
    order.financial_status, order.fulfillment_status = record.financial_status, record.fulfillment_status
    order.payment_method, order.shipping_method = record.payment_method, record.shipping_method
    order.currency = record.currency
    order.total, order.subtotal = _amount(record.total), _amount(record.subtotal)
    order.shipping_total, order.tax_total = _amount(record.shipping_total), _amount(record.tax_total)
    order.discount_total = _amount(record.discount_total)
    order.cart_token, order.checkout_token = record.cart_token, record.checkout_token
    order.shipping_address, order.billing_address = _address(record.shipping_address), _address(record.billing_address)
    order.placed_at, order.paid_at, order.cancelled_at = record.placed_at, record.paid_at, record.cancelled_at
    order.platform_updated_at = record.updated_at
    known = order.id is not None
    session.flush()
    if known:  # a new order has no lines to replace
        session.execute(delete(OrderLine).where(OrderLine.shop_id == shop_id, OrderLine.order_id == order.id))
    for line in record.lines:
        session.add(OrderLine(
            shop_id=shop_id, order_id=order.id, platform_id=line.platform_id, product_platform_id=line.product_id,
            variant_platform_id=line.variant_id, sku=line.sku, name=line.name, quantity=line.quantity,
            unit_price=line.unit_price.amount, total=line.total.amount,
        ))
    _mark_cart_converted(session, shop_id, order)
    signals.note_order(session, shop_id, order, before)
    return order


def _mark_cart_converted(session: Session, shop_id: int, order: Order) -> None:
    tokens = [t for t in (order.checkout_token, order.cart_token) if t]
    if not tokens:
        return
    for cart in session.scalars(select(Cart).where(Cart.shop_id == shop_id, Cart.platform_token.in_(tokens))):
        if cart.recovered_order_id is None:
            cart.status = cart_status_after_purchase(cart)
            cart.recovered_order_id = order.id


def cart_status_after_purchase(cart: Cart) -> str:
    """A cart bought after we saw it abandoned is recovered; one bought before that simply converted."""
    return "recovered" if cart.abandoned_at is not None else "converted"


def apply_cart(session: Session, shop_id: int, record: StoreCart) -> Cart | None:
    """Upsert a cart (a Shopify checkout, a WooCommerce draft, a snippet cart); None when stale."""
    cart = _row_to_update(session, Cart, shop_id, Cart.platform_token, record.token, record.updated_at, currency=record.currency)
    if cart is None:
        return None
    before = signals.cart_state(cart)
    customer = customer_by_platform_id(session, shop_id, record.customer_platform_id)
    cart.customer_id = customer.id if customer else cart.customer_id
    cart.email = record.email.lower() if record.email else cart.email
    cart.phone = record.phone or cart.phone
    cart.currency, cart.total = record.currency, record.total.amount
    cart.recovery_url = record.recovery_url or cart.recovery_url
    cart.platform_updated_at = record.updated_at
    cart.last_activity_at = record.updated_at or utcnow()
    if record.completed_at is not None and cart.status in ("active", "abandoned"):
        cart.status = cart_status_after_purchase(cart)
    session.flush()
    session.execute(delete(CartLine).where(CartLine.shop_id == shop_id, CartLine.cart_id == cart.id))
    for line in record.lines:
        session.add(CartLine(
            shop_id=shop_id, cart_id=cart.id, product_platform_id=line.product_id, variant_platform_id=line.variant_id,
            sku=line.sku, name=line.name, quantity=line.quantity, unit_price=line.unit_price.amount,
            image_url=line.image_url, product_url=line.product_url,
        ))
    signals.note_cart(session, shop_id, cart, before)
    return cart


def apply_product(session: Session, shop_id: int, record: StoreProduct) -> Product | None:
    product = _row_to_update(session, Product, shop_id, Product.platform_id, record.platform_id, record.updated_at,
                             currency=record.price.currency)
    if product is None:
        return None
    before = signals.product_state(product)
    product.title, product.sku = record.title, record.sku
    product.price, product.currency = record.price.amount, record.price.currency
    product.stock_status, product.stock_quantity = record.stock_status, record.stock_quantity
    product.url, product.image_url = record.url, record.image_url
    product.platform_updated_at = record.updated_at
    session.flush()
    signals.note_product(session, shop_id, product, before)
    return product


def apply_refund(session: Session, shop_id: int, record: StoreRefund) -> Order | None:
    """A refund marks its order refunded (fully or partly); the order row itself stays newer-wins."""
    order = session.scalars(select(Order).where(Order.shop_id == shop_id, Order.platform_id == record.order_platform_id)).first()
    if order is None:
        return None
    refunded_all = record.amount.amount >= order.total
    order.financial_status = "refunded" if refunded_all else "partially_refunded"
    session.flush()
    signals.note_refund(session, shop_id, order, record.platform_id, record.amount.amount, record.amount.currency,
                        record.created_at)
    return order


def apply_return(session: Session, shop_id: int, platform_id: str, order_platform_id: str | None, status: str,
                 updated_at: dt.datetime | None) -> ReturnRequest | None:
    order = None
    if order_platform_id:  # looked up first: a query after the new row is added would flush it without a status
        order = session.scalars(select(Order).where(Order.shop_id == shop_id, Order.platform_id == order_platform_id)).first()
    held = _row_to_update(session, ReturnRequest, shop_id, ReturnRequest.platform_id, platform_id, updated_at)
    if held is None:
        return None
    existed = held.id is not None
    status_before = held.status
    held.order_id = order.id if order else held.order_id
    held.order_platform_id = order_platform_id
    held.status = status
    held.platform_updated_at = updated_at
    session.flush()
    signals.note_return(session, shop_id, held, existed, status_before)
    return held
