"""Writing back to a WooCommerce store: tracking numbers, the optional "completed" status, recovery coupons.

Nothing here creates a side effect by accident: refunds are never created, a customer-visible note only when
the owner turned it on, and each write is checked against what the store already holds before it is posted.
"""
from __future__ import annotations

import logging

from app.jobs.registry import job_kind
from app.jobs.runner import PermanentJobError
from app.models import Coupon, Customer, Order, Shipment, Shop
from app.store.courier_names import courier_display_name
from app.woocommerce.ingest import apply_order_payload
from app.woocommerce.sync import keys_refused_guard, shop_and_client
from connectors.records import Money
from connectors.woocommerce import mapping

log = logging.getLogger(__name__)

WRITE_LEDGER_SIZE = 500  # orders whose latest version we produced ourselves, to recognise their webhook echo


def remember_our_write(shop: Shop, payload: dict) -> None:
    """Note the order version our write produced: its `order.updated` webhook is then an echo, not news."""
    modified = mapping.parse_gmt(payload.get("date_modified_gmt"))
    if modified is None:
        return
    writes = dict((shop.settings or {}).get("woocommerce_writes") or {})
    writes.pop(str(payload["id"]), None)
    writes[str(payload["id"])] = modified.isoformat()
    shop.settings = {**(shop.settings or {}), "woocommerce_writes": dict(list(writes.items())[-WRITE_LEDGER_SIZE:])}


@job_kind("woocommerce.write_tracking", max_attempts=6)
def write_tracking(ctx, shipment_id: int) -> None:
    """Put the shipment's tracking on the order (tracking plugin, else an order note), once."""
    shop, client = shop_and_client(ctx)
    with ctx.sessions() as session:
        shipment = session.get(Shipment, shipment_id)
        order = session.get(Order, shipment.order_id) if shipment is not None and shipment.order_id else None
    if shipment is None or shipment.platform_fulfillment_id:
        return
    if order is None or not shipment.tracking_numbers:
        raise PermanentJobError(f"shipment {shipment_id} has no order or tracking number to write")
    options = shop.settings or {}
    with keys_refused_guard(ctx):
        written = client.write_tracking(
            order.platform_id, courier_display_name(shipment.courier), shipment.tracking_numbers[0],
            shipment.tracking_url, capabilities=client.discover(),
            customer_note=bool(options.get("woocommerce_customer_note_on_ship", False)))
        if options.get("woocommerce_complete_on_ship") and order.status not in ("completed", "refunded", "cancelled"):
            client.set_order_status(order.platform_id, "completed")
        fresh = client.get_order_raw(order.platform_id)
    held_shop = ctx.session.get(Shop, ctx.shop_id)
    remember_our_write(held_shop, fresh)
    apply_order_payload(ctx.session, held_shop, fresh)
    reference = written.tracking.tracking_id if written.tracking is not None else f"note:{written.note.id}"
    ctx.session.get(Shipment, shipment_id).platform_fulfillment_id = (reference or "written")[:64]
    log.info("woocommerce tracking written", extra={"shipment_id": shipment_id, "via": written.via,
                                                     "newly_posted": written.created})


@job_kind("woocommerce.create_coupon", max_attempts=6)
def create_coupon(ctx, coupon_id: int) -> None:
    """The coupon's single-use code in the store, limited to the customer's email, expiring with the coupon."""
    shop, client = shop_and_client(ctx)
    with ctx.sessions() as session:
        coupon = session.get(Coupon, coupon_id)
        customer = session.get(Customer, coupon.customer_id) if coupon is not None and coupon.customer_id else None
    if coupon is None or coupon.platform_id:
        return
    if coupon.percent_off is None and coupon.amount_off is None:
        raise PermanentJobError(f"coupon {coupon_id} has neither a percentage nor an amount")
    with keys_refused_guard(ctx):
        made = client.create_coupon(
            coupon.code, percent=coupon.percent_off,
            amount=Money(coupon.amount_off, coupon.currency or shop.currency) if coupon.amount_off is not None else None,
            email_restrictions=[customer.email] if customer is not None and customer.email else [],
            expires_at=coupon.expires_at, description="Store Companion recovery coupon",
            meta={"_companion_coupon": str(coupon.id)})
    ctx.session.get(Coupon, coupon_id).platform_id = str(made.id)
