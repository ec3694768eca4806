"""Turning a stored Shopify webhook into changes to our copy of the shop, one handler per topic."""
from __future__ import annotations

import logging

from sqlalchemy import select

from app.inbox import TopicHandlers
from app.jobs.queue import enqueue
from app.jobs.registry import job_kind
from app.models import DataExport, Order, Shipment, Shop, utcnow
from app.shopify.access import stop_shop_jobs
from app.automations.signals import emit_signal
from app.store.apply import apply_cart, apply_customer, apply_order, apply_refund, apply_return, customer_by_platform_id, record_platform_consent
from app.store.privacy import export_customer_data, redact_customer
from connectors.shopify import mapping

log = logging.getLogger(__name__)

TOPICS = TopicHandlers("shopify")
handles = TOPICS.handles


@job_kind("shopify.ingest_event")
def ingest_event(ctx, event_id: int) -> None:
    TOPICS.ingest(ctx, event_id)


@handles("orders/create", "orders/updated", "orders/paid", "orders/cancelled", "orders/fulfilled",
         "orders/partially_fulfilled", "orders/edited")
def _order(ctx, shop_id: int, payload: dict, topic: str) -> str:
    return "applied" if apply_order(ctx.session, shop_id, mapping.order_from_payload(payload)) else "stale"


@handles("refunds/create")
def _refund(ctx, shop_id: int, payload: dict, topic: str) -> str:
    return "applied" if apply_refund(ctx.session, shop_id, mapping.refund_from_payload(payload)) else "unknown order"


@handles("checkouts/create", "checkouts/update")
def _checkout(ctx, shop_id: int, payload: dict, topic: str) -> str:
    return "applied" if apply_cart(ctx.session, shop_id, mapping.cart_from_checkout_payload(payload)) else "stale"


@handles("customers/create", "customers/update", "customers/enable", "customers/disable")
def _customer(ctx, shop_id: int, payload: dict, topic: str) -> str:
    return "applied" if apply_customer(ctx.session, shop_id, mapping.customer_from_payload(payload)) else "stale"


@handles("customers_email_marketing_consent/update", "customers_marketing_consent/update")
def _consent(ctx, shop_id: int, payload: dict, topic: str) -> str:
    customer_platform_id, consent = mapping.consent_from_payload(topic, payload)
    customer = customer_by_platform_id(ctx.session, shop_id, customer_platform_id)
    if customer is None:
        return "unknown customer"
    return "applied" if record_platform_consent(ctx.session, shop_id, customer.id, consent) else "unchanged"


@handles("fulfillments/create", "fulfillments/update")
def _fulfillment(ctx, shop_id: int, payload: dict, topic: str) -> str:
    update = mapping.fulfillment_from_payload(payload)
    order = ctx.session.scalars(select(Order).where(Order.shop_id == shop_id, Order.platform_id == update.order_platform_id)).first()
    shipment = ctx.session.scalars(select(Shipment).where(
        Shipment.shop_id == shop_id, Shipment.platform_fulfillment_id == update.platform_id)).first()
    if shipment is None:
        # A fulfillment we did not write (another app, the admin): track it as the shop's own shipment.
        shipment = Shipment(shop_id=shop_id, order_id=order.id if order else None,
                            courier=f"shopify:{update.tracking_company or 'other'}"[:32],
                            idempotency_key=f"shopify-fulfillment:{update.platform_id}",
                            platform_fulfillment_id=update.platform_id)
        ctx.session.add(shipment)
    shipment.tracking_numbers = list(update.tracking_numbers)
    shipment.status_raw = update.shipment_status or update.status
    ctx.session.flush()
    if shipment.tracking_numbers and order is not None:
        # "shipped" for the flows, once per shipment; one from our print station has signalled it already (same key)
        emit_signal(ctx.session, shop_id, "fulfillment_created", dedupe_key=f"fulfillment_created:shipment:{shipment.id}",
                    customer_id=order.customer_id, subject=("order", order.id), occurred_at=update.updated_at,
                    payload={"shipment_id": shipment.id, "order_id": order.id, "courier": shipment.courier,
                             "tracking_number": shipment.tracking_numbers[0],
                             "tracking_url": update.tracking_urls[0] if update.tracking_urls else None, "status": "created"})
    return "applied"


@handles("returns/request", "returns/approve", "returns/decline", "returns/cancel", "returns/close",
         "returns/reopen", "returns/process", "returns/update")
def _return(ctx, shop_id: int, payload: dict, topic: str) -> str:
    request = mapping.return_from_payload(topic, payload)
    held = apply_return(ctx.session, shop_id, request.platform_id, request.order_platform_id, request.status, request.updated_at)
    return "applied" if held else "stale"


@handles("app/uninstalled")
def _uninstalled(ctx, shop_id: int, payload: dict, topic: str) -> str:
    shop = ctx.session.get(Shop, shop_id)
    shop.status = "uninstalled"
    shop.credentials = None
    shop.access_token_expires_at = shop.refresh_token_expires_at = None
    cancelled = stop_shop_jobs(ctx.session, shop_id, "shop uninstalled the app")
    log.info("shopify shop uninstalled", extra={"shop_id": shop_id, "jobs_cancelled": cancelled})
    return "applied"


@handles("app/scopes_update")
def _scopes(ctx, shop_id: int, payload: dict, topic: str) -> str:
    shop = ctx.session.get(Shop, shop_id)
    shop.settings = {**(shop.settings or {}), "shopify_scopes": payload.get("current", [])}
    return "applied"


@handles("bulk_operations/finish")
def _bulk_finished(ctx, shop_id: int, payload: dict, topic: str) -> str:
    enqueue(ctx.session, "shopify.sync_step", shop_id=shop_id)
    return "applied"


@handles("customers/data_request")
def _data_request(ctx, shop_id: int, payload: dict, topic: str) -> str:
    customer = payload.get("customer") or {}
    request_key = f"shopify:{(payload.get('data_request') or {}).get('id', 'unknown')}"
    held = ctx.session.scalars(select(DataExport).where(DataExport.shop_id == shop_id, DataExport.request_key == request_key)).first()
    if held is not None:
        return "duplicate"
    subject = {"platform_id": _str(customer.get("id")), "email": (customer.get("email") or "").lower() or None,
               "phone": customer.get("phone")}
    content = export_customer_data(ctx.session, shop_id, platform_id=subject["platform_id"], email=subject["email"],
                                   phone=subject["phone"], order_platform_ids=[_str(o) for o in payload.get("orders_requested") or []])
    ctx.session.add(DataExport(shop_id=shop_id, request_key=request_key, subject=subject, content=content,
                               status="ready", completed_at=utcnow()))
    return "applied"


@handles("customers/redact")
def _redact(ctx, shop_id: int, payload: dict, topic: str) -> str:
    customer = payload.get("customer") or {}
    counts = redact_customer(ctx.session, shop_id, platform_id=_str(customer.get("id")), email=customer.get("email"),
                             phone=customer.get("phone"), order_platform_ids=[_str(o) for o in payload.get("orders_to_redact") or []])
    log.info("customer redacted", extra={"shop_id": shop_id, **counts})
    return "applied"


@handles("shop/redact")
def _shop_redact(ctx, shop_id: int, payload: dict, topic: str) -> str:
    # Erasing the shop deletes this job's own row with it, so the erasure runs as a job of no shop.
    enqueue(ctx.session, "privacy.erase_shop", dedupe_key=f"privacy.erase_shop:{shop_id}", erased_shop_id=shop_id)
    return "applied"


def _str(value) -> str | None:
    return None if value is None else str(value)
