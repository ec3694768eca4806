"""POST /webhooks/shopify: verify the HMAC of the raw body, store the delivery with its ingest job, answer fast."""
from __future__ import annotations

import logging
import time

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.inbox import accept_event
from app.models import Shop
from connectors.errors import InvalidPayload
from connectors.shopify import COMPLIANCE_TOPICS, WebhookDelivery, verify_webhook

log = logging.getLogger(__name__)
shopify_webhooks = Blueprint("shopify_webhooks", __name__)

KEPT_HEADERS = ("topic", "shop_domain", "webhook_id", "event_id", "triggered_at", "api_version")


@shopify_webhooks.post("/webhooks/shopify")
@shopify_webhooks.post("/webhooks/shopify/<path:_subpath>")
def receive(_subpath: str | None = None):
    runtime = current_app.extensions["companion"]
    settings = runtime.settings.shopify
    if not settings.configured:
        return jsonify(error="not_configured", message="this service has no Shopify app configured"), 404
    raw = request.get_data(cache=False)  # the exact bytes Shopify signed; never re-serialised JSON
    try:
        delivery = WebhookDelivery.from_headers(request.headers)
    except InvalidPayload as exc:
        if not verify_webhook(raw, _signature_header(), settings.secrets):
            return jsonify(error="invalid_signature", message="X-Shopify-Hmac-Sha256 does not match the body"), 401
        return jsonify(error="missing_header", message=str(exc)), 400
    if not verify_webhook(raw, delivery.signature, settings.secrets):
        return jsonify(error="invalid_signature", message="X-Shopify-Hmac-Sha256 does not match the body"), 401

    shop_id = _known_shop_id(runtime, delivery.shop_domain)
    if shop_id is None:
        # Nothing is held for a shop we do not know (never installed, or already erased): acknowledge.
        log.info("shopify webhook for unknown shop", extra={"topic": delivery.topic, "shop": delivery.shop_domain})
        return jsonify(status="ignored", reason="unknown shop"), 200
    headers = {key: _header_value(getattr(delivery, key)) for key in KEPT_HEADERS}
    try:
        event_id = accept_event(runtime, shop_id=shop_id, platform="shopify", topic=delivery.topic,
                                dedupe_key=delivery.webhook_id, headers=headers, body=raw,
                                ingest_job="shopify.ingest_event")
    except IntegrityError:
        # The remembered shop was erased meanwhile: forget it and let Shopify retry (the next answer is "ignored").
        _SHOP_IDS.pop((str(runtime.engine.url), delivery.shop_domain), None)
        raise
    if event_id is None:
        return jsonify(status="duplicate"), 200
    return jsonify(status="accepted", compliance=delivery.topic in COMPLIANCE_TOPICS), 200


_SHOP_IDS: dict[tuple[str, str], tuple[int, float]] = {}
SHOP_ID_TTL_SECONDS = 30.0


def _known_shop_id(runtime, domain: str) -> int | None:
    """The shop's id, remembered for a few seconds per process: every webhook of a busy shop needs it.

    Only known shops are remembered, so a shop's first webhooks right after its install are never turned away.
    """
    key = (str(runtime.engine.url), domain)
    remembered = _SHOP_IDS.get(key)
    now = time.monotonic()
    if remembered is not None and remembered[1] > now:
        return remembered[0]
    with runtime.sessions() as session:
        shop_id = session.scalar(select(Shop.id).where(Shop.platform == "shopify", Shop.domain == domain))
    if shop_id is not None:
        if len(_SHOP_IDS) > 10_000:
            _SHOP_IDS.clear()
        _SHOP_IDS[key] = (shop_id, now + SHOP_ID_TTL_SECONDS)
    return shop_id


def _signature_header() -> str | None:
    return request.headers.get("X-Shopify-Hmac-Sha256") or request.headers.get("shopify-hmac-sha256")


def _header_value(value) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
