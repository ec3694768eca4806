"""POST /webhooks/shopify: verify the HMAC of the raw body, store the delivery with its ingest job, answer fast.

Every delivery of every shop comes here, so it is a lean route (app/web/lean_routes.py): answered from the
WSGI environ, without Flask's request machinery.
"""
from __future__ import annotations

import logging
import time
import weakref

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.inbox import accept_event
from app.models import Shop
from app.web.lean_routes import LeanAnswer, LeanRequest, LeanRoutes, json_answer
from connectors.errors import InvalidPayload
from connectors.shopify import COMPLIANCE_TOPICS, WebhookDelivery, verify_webhook

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/shopify"  # compliance deliveries may come to a path below it
KEPT_HEADERS = ("topic", "shop_domain", "webhook_id", "event_id", "triggered_at", "api_version")


def add_shopify_webhooks(routes: LeanRoutes, runtime) -> None:
    routes.add(WEBHOOK_PATH, lambda request: receive(runtime, request), subpaths=True)


def receive(runtime, request: LeanRequest) -> LeanAnswer:
    settings = runtime.settings.shopify
    if not settings.configured:
        return json_answer(404, error="not_configured", message="this service has no Shopify app configured")
    raw = request.body()  # the exact bytes Shopify signed; never re-serialised JSON
    try:
        delivery = WebhookDelivery.from_headers(_shopify_headers(request.environ))
    except InvalidPayload as exc:
        signature = request.header("X-Shopify-Hmac-Sha256") or request.header("shopify-hmac-sha256")
        if not verify_webhook(raw, signature, settings.secrets):
            return _INVALID_SIGNATURE
        return json_answer(400, error="missing_header", message=str(exc))
    if not verify_webhook(raw, delivery.signature, settings.secrets):
        return _INVALID_SIGNATURE

    shop_id = _known_shop_id(runtime, delivery.shop_domain)
    if shop_id is None:
        # Nothing is held for a shop we do not know (never installed, or already erased): acknowledge.
        log.info("shopify webhook for unknown shop", extra={"topic": delivery.topic, "shop": delivery.shop_domain})
        return json_answer(200, reason="unknown shop", status="ignored")
    headers = {key: _header_value(getattr(delivery, key)) for key in KEPT_HEADERS}
    try:
        event_id = accept_event(runtime, shop_id=shop_id, platform="shopify", topic=delivery.topic,
                                dedupe_key=delivery.webhook_id, headers=headers, body=raw,
                                ingest_job="shopify.ingest_event")
    except IntegrityError:
        # The remembered shop was erased meanwhile: forget it and let Shopify retry (the next answer is "ignored").
        _SHOP_IDS.get(runtime.engine, {}).pop(delivery.shop_domain, None)
        raise
    if event_id is None:
        return _DUPLICATE
    return _ACCEPTED_COMPLIANCE if delivery.topic in COMPLIANCE_TOPICS else _ACCEPTED


# The answers of the hot path, built once.
_ACCEPTED = LeanAnswer(200, b'{"compliance":false,"status":"accepted"}\n')
_ACCEPTED_COMPLIANCE = LeanAnswer(200, b'{"compliance":true,"status":"accepted"}\n')
_DUPLICATE = LeanAnswer(200, b'{"status":"duplicate"}\n')
_INVALID_SIGNATURE = json_answer(401, error="invalid_signature", message="X-Shopify-Hmac-Sha256 does not match the body")


# Shopify's headers as WSGI names them: X-Shopify-* (webhooks) and shopify-* (newer event deliveries).
_SHOPIFY_ENVIRON_KEYS = tuple(
    (f"HTTP_{prefix}{name}".upper().replace("-", "_"), f"{prefix}{name}".lower())
    for name in ("topic", "shop-domain", "webhook-id", "hmac-sha256", "event-id", "triggered-at", "api-version")
    for prefix in ("x-shopify-", "shopify-"))


def _shopify_headers(environ: dict) -> dict[str, str]:
    """Only the Shopify headers a delivery is read from, looked up by name in the WSGI environ: going through
    werkzeug's header view, or over every environ key, cost a webhook more than its HMAC check."""
    return {name: environ[key] for key, name in _SHOPIFY_ENVIRON_KEYS if key in environ}


_SHOP_IDS: "weakref.WeakKeyDictionary[object, dict[str, tuple[int, float]]]" = weakref.WeakKeyDictionary()
SHOP_ID_TTL_SECONDS = 30.0  # per database engine: domain -> (shop id, until)


def _known_shop_id(runtime, domain: str) -> int | None:
    """The shop's id, remembered for a few seconds per process: every webhook of a busy shop needs it.

    Only known shops are remembered, so a shop's first webhooks right after its install are never turned away.
    """
    remembered_ids = _SHOP_IDS.get(runtime.engine)
    if remembered_ids is None:
        remembered_ids = _SHOP_IDS.setdefault(runtime.engine, {})
    remembered = remembered_ids.get(domain)
    now = time.monotonic()
    if remembered is not None and remembered[1] > now:
        return remembered[0]
    with runtime.sessions() as session:
        shop_id = session.scalar(select(Shop.id).where(Shop.platform == "shopify", Shop.domain == domain))
    if shop_id is not None:
        if len(remembered_ids) > 10_000:
            remembered_ids.clear()
        remembered_ids[domain] = (shop_id, now + SHOP_ID_TTL_SECONDS)
    return shop_id


def _header_value(value) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)
