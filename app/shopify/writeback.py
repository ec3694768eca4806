"""Writing back to the shop: tracking through fulfillments, and single-use recovery discount codes."""
from __future__ import annotations

import logging

from app.jobs.registry import job_kind
from app.jobs.runner import PermanentJobError
from app.models import Coupon, Customer, Order, Shipment, Shop, utcnow
from app.shopify.access import admin_client
from app.store.courier_names import courier_display_name
from app.store.reauthorization import refused_credentials_stop_the_shop
from connectors.records import Money
from connectors.shopify.client import CodeAlreadyExists

log = logging.getLogger(__name__)


@job_kind("shopify.fulfill_shipment", max_attempts=5)
def fulfill_shipment(ctx, shipment_id: int) -> None:
    """Tell Shopify the order shipped, with company, number and URL; at most once per shipment."""
    client = admin_client(ctx.sessions, ctx.settings, ctx.shop_id)
    # Read in a short session: the job's own transaction (a write lock on SQLite) opens only after the call.
    with ctx.sessions() as session:
        shipment = session.get(Shipment, shipment_id)
        order = session.get(Order, shipment.order_id) if shipment is not None and shipment.order_id else None
        shop = session.get(Shop, ctx.shop_id)
    if shipment is None or shipment.platform_fulfillment_id:
        return
    if order is None or not shipment.tracking_numbers or not shipment.tracking_url:
        raise PermanentJobError(f"shipment {shipment_id} has no order, tracking number or tracking URL to send")
    with refused_credentials_stop_the_shop(ctx.sessions, ctx.shop_id):
        fulfillment_ids = client.fulfill_order(
            order.platform_id,
            tracking_company=courier_display_name(shipment.courier),
            tracking_number=shipment.tracking_numbers[0],
            tracking_url=shipment.tracking_url,
            notify_customer=bool((shop.settings or {}).get("shopify_notify_customer", False)),
        )
    ctx.session.get(Shipment, shipment_id).platform_fulfillment_id = fulfillment_ids[0] if fulfillment_ids else "none-open"
    log.info("shopify fulfillment written", extra={"shipment_id": shipment_id, "fulfillments": fulfillment_ids})


@job_kind("shopify.create_discount", max_attempts=5)
def create_discount(ctx, coupon_id: int) -> None:
    """Create the coupon's single-use code in Shopify, bound to its customer, expiring with the coupon."""
    client = admin_client(ctx.sessions, ctx.settings, ctx.shop_id)
    with ctx.sessions() as session:
        coupon = session.get(Coupon, coupon_id)
        customer = session.get(Customer, coupon.customer_id) if coupon is not None and coupon.customer_id else None
    if coupon is None or coupon.platform_id:
        return
    if coupon.percent_off is None and coupon.amount_off is None:
        raise PermanentJobError(f"coupon {coupon_id} has neither a percentage nor an amount")
    try:
        with refused_credentials_stop_the_shop(ctx.sessions, ctx.shop_id):
            platform_id = client.create_discount_code(
                code=coupon.code,
                title=f"Recovery {coupon.code}",
                percentage=coupon.percent_off,
                amount=Money(coupon.amount_off, coupon.currency) if coupon.amount_off is not None else None,
                customer_id=customer.platform_id if customer else None,
                starts_at=utcnow(),
                ends_at=coupon.expires_at,
            )
    except CodeAlreadyExists:
        # Codes are random per coupon: an existing one is our own earlier attempt that got through.
        platform_id = "existing"
    ctx.session.get(Coupon, coupon_id).platform_id = platform_id
