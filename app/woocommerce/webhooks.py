"""POST /webhooks/woocommerce/<shop token>: answer the ping, verify the raw-body HMAC, store the delivery, answer fast.

WooCommerce never retries a failed delivery and coalesces rapid updates, so a delivery is a hint: it is
stored with its ingest job in one transaction and deduplicated on (resource, id, date_modified_gmt, body
hash) because `X-WC-Webhook-Delivery-ID` is not unique. Reconciliation polling closes any gap.
"""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select

from app.inbox import accept_event
from app.models import Shop
from app.woocommerce.access import webhook_secrets
from connectors.errors import InvalidPayload
from connectors.woocommerce.webhooks import (
    WebhookDelivery, dedupe_key, modified_at, parse_body, ping_webhook_id, verify_webhook,
)

log = logging.getLogger(__name__)
woocommerce_webhooks = Blueprint("woocommerce_webhooks", __name__)


def _problem(status: int, error: str, message: str):
    return jsonify(error=error, message=message), status


@woocommerce_webhooks.post("/webhooks/woocommerce/<token>")
def receive(token: str):
    runtime = current_app.extensions["companion"]
    raw = request.get_data(cache=False)  # the exact bytes WooCommerce signed (it escapes / as \/)
    with runtime.sessions() as session:
        shop = session.scalars(select(Shop).where(Shop.platform == "woocommerce", Shop.webhook_token == token)).first()
        secrets = webhook_secrets(shop) if shop is not None else []
        shop_id = shop.id if shop is not None else None
    if shop_id is None:
        return _problem(404, "unknown_shop", "no WooCommerce store is connected at this address")
    if (webhook_id := ping_webhook_id(raw, request.headers)) is not None:
        log.info("woocommerce webhook ping", extra={"shop_id": shop_id, "webhook_id": webhook_id})
        return jsonify(status="pong"), 200
    try:
        delivery = WebhookDelivery.from_headers(request.headers)
    except InvalidPayload as exc:
        return _problem(400 if request.headers.get("X-WC-Webhook-Signature") else 401, "invalid_delivery", str(exc))
    if not verify_webhook(raw, delivery.signature, secrets):
        return _problem(401, "invalid_signature", "X-WC-Webhook-Signature does not match the raw body")
    try:
        body = parse_body(raw)
    except InvalidPayload as exc:
        return _problem(400, "invalid_body", str(exc))

    event_id = accept_event(
        runtime, shop_id=shop_id, platform="woocommerce", topic=delivery.topic,
        dedupe_key=dedupe_key(delivery, raw)[:255],
        headers={"topic": delivery.topic, "resource": delivery.resource, "event": delivery.event,
                 "webhook_id": delivery.webhook_id, "delivery_id": delivery.delivery_id, "source": delivery.source},
        body=raw, ingest_job="woocommerce.ingest_event", resource_updated_at=modified_at(body),
    )
    return jsonify(status="accepted" if event_id is not None else "duplicate"), 200
