"""Turning a stored WooCommerce delivery into changes to our copy of the store, one handler per topic."""
from __future__ import annotations

from sqlalchemy import select

from app.inbox import TopicHandlers
from app.jobs.queue import enqueue
from app.jobs.registry import job_kind
from app.models import Order, Product, Shop, utcnow
from app.store.apply import apply_cart, apply_customer, apply_order, apply_product
from connectors.woocommerce import mapping

TOPICS = TopicHandlers("woocommerce", shop_argument=lambda ctx, shop_id: ctx.session.get(Shop, shop_id))
handles = TOPICS.handles


@job_kind("woocommerce.ingest_event")
def ingest_event(ctx, event_id: int) -> None:
    TOPICS.ingest(ctx, event_id)


def apply_order_payload(session, shop: Shop, payload: dict) -> str:
    """An order body (webhook or REST): a draft becomes a cart, anything else an order; returns the outcome."""
    if payload.get("status") == "checkout-draft":
        return "cart" if apply_cart(session, shop.id, mapping.cart_from_draft_order(payload, shop.domain)) else "stale"
    record = mapping.order_from_payload(payload)
    order = apply_order(session, shop.id, record)
    if order is None:  # not newer than what we hold
        return "echo" if _our_write_made(shop, record.platform_id, record.updated_at) else "stale"
    if mapping.refund_ids(payload) or payload.get("status") == "refunded":
        # The order body lists refunds without their dates; fetch them once per order version.
        enqueue(session, "woocommerce.fetch_refunds", shop_id=shop.id, order_platform_id=record.platform_id,
                dedupe_key=f"woocommerce.fetch_refunds:{shop.id}:{record.platform_id}:{record.updated_at.isoformat()}")
    return "order"


def _our_write_made(shop: Shop, order_platform_id: str, modified) -> bool:
    """Whether this version of the order is the one our own write-back produced (its webhook is an echo)."""
    writes = (shop.settings or {}).get("woocommerce_writes", {})
    return modified is not None and writes.get(order_platform_id) == modified.isoformat()


@handles("order.created", "order.updated", "order.restored")
def order_changed(ctx, shop: Shop, payload: dict, topic: str) -> str:
    return apply_order_payload(ctx.session, shop, payload)


@handles("order.deleted")
def order_trashed(ctx, shop: Shop, payload: dict, topic: str) -> str:
    """WooCommerce sends only `{"id": N}` when an order goes to the bin; it can come back (order.restored)."""
    order = ctx.session.scalars(select(Order).where(Order.shop_id == shop.id,
                                                    Order.platform_id == str(payload.get("id")))).first()
    if order is None:
        return "ignored"
    order.status = "trash"
    return "order"


@handles("customer.created", "customer.updated")
def customer_changed(ctx, shop: Shop, payload: dict, topic: str) -> str:
    return "customer" if apply_customer(ctx.session, shop.id, mapping.customer_from_payload(payload)) else "stale"


@handles("product.created", "product.updated", "product.restored")
def product_changed(ctx, shop: Shop, payload: dict, topic: str) -> str:
    record = mapping.product_from_payload(payload, shop.currency)
    return "product" if apply_product(ctx.session, shop.id, record) else "stale"


@handles("product.deleted")
def product_trashed(ctx, shop: Shop, payload: dict, topic: str) -> str:
    product = ctx.session.scalars(select(Product).where(Product.shop_id == shop.id,
                                                        Product.platform_id == str(payload.get("id")))).first()
    if product is None:
        return "ignored"
    product.stock_status = "trash"
    return "product"


@handles("wcap_cart.cutoff", "wcap_cart.recovered")
def abandoned_cart_lite(ctx, shop: Shop, payload: dict, topic: str) -> str:
    """Abandoned Cart Lite's own signed topics: its carts join ours, with the plugin's recovery link."""
    recovered = utcnow() if topic == "wcap_cart.recovered" else None
    record = mapping.cart_from_abandoned_cart_lite(payload, shop.currency, recovered_at=recovered)
    return "cart" if apply_cart(ctx.session, shop.id, record) else "stale"

