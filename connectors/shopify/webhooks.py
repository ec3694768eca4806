"""Webhook deliveries: the raw-body HMAC, the delivery headers, and the topics we subscribe to."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Mapping, Sequence

from connectors.errors import InvalidPayload
from connectors.shopify.shop_domain import normalise_shop_domain
from connectors.signatures import body_signed_by, sign_body

SUBSCRIPTION_TOPICS: tuple[str, ...] = (
    "orders/create", "orders/updated", "orders/paid", "orders/cancelled", "orders/fulfilled", "refunds/create",
    "checkouts/create", "checkouts/update",
    "customers/create", "customers/update",
    "customers_email_marketing_consent/update", "customers_marketing_consent/update",
    "fulfillments/create", "fulfillments/update",
    "returns/request", "returns/approve", "returns/decline", "returns/cancel", "returns/close", "returns/reopen",
    "returns/process", "returns/update",
    "app/uninstalled", "app/scopes_update", "bulk_operations/finish",
)
# Configured in shopify.app.toml (compliance_topics); the Admin API cannot create them.
COMPLIANCE_TOPICS: tuple[str, ...] = ("customers/data_request", "customers/redact", "shop/redact")

_OTHER_KNOWN_TOPICS = ("orders/partially_fulfilled", "orders/edited", "orders/delete", "checkouts/delete",
                       "customers/delete", "shop/update")
_TOPIC_BY_ENUM = {topic.replace("/", "_").upper(): topic
                  for topic in SUBSCRIPTION_TOPICS + COMPLIANCE_TOPICS + _OTHER_KNOWN_TOPICS}


def topic_to_enum(topic: str) -> str:
    """`orders/create` → `ORDERS_CREATE` (the GraphQL WebhookSubscriptionTopic)."""
    return topic.strip().replace("/", "_").upper()


def enum_to_topic(value: str) -> str:
    """`ORDERS_CREATE` → `orders/create`; unknown enums split at their last underscore."""
    if value in _TOPIC_BY_ENUM:
        return _TOPIC_BY_ENUM[value]
    # Ambiguous in general (APP_SCOPES_UPDATE is app/scopes_update), so known topics are looked up first.
    resource, _, action = value.lower().rpartition("_")
    return f"{resource}/{action}" if resource else value.lower()


def sign_webhook(raw_body: bytes, secret: str) -> str:
    """The X-Shopify-Hmac-Sha256 value for this body (for tests and the fake server)."""
    return sign_body(raw_body, secret)


def verify_webhook(raw_body: bytes, signature: str | None, secrets: Sequence[str]) -> bool:
    """True when one of our secrets signed exactly these bytes; after a rotation Shopify signs with the old
    secret for up to an hour, so every secret is tried."""
    return body_signed_by(raw_body, signature, secrets)


def _header(lowered: Mapping[str, str], name: str) -> str | None:
    # Shopify sends X-Shopify-*; the newer events deliveries send shopify-*; HTTP/2 lowercases both.
    value = lowered.get(f"x-shopify-{name}") or lowered.get(f"shopify-{name}")
    return value.strip() if value and value.strip() else None


def _timestamp(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None  # informational only; a malformed one must not lose the delivery
    return moment.astimezone(dt.timezone.utc) if moment.tzinfo else None


@dataclass(frozen=True)
class WebhookDelivery:
    topic: str
    shop_domain: str
    webhook_id: str
    event_id: str | None
    triggered_at: dt.datetime | None
    api_version: str | None
    signature: str

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> "WebhookDelivery":
        lowered = {str(key).lower(): str(value) for key, value in headers.items()}
        required = {name: _header(lowered, name) for name in ("topic", "shop-domain", "webhook-id", "hmac-sha256")}
        for name, value in required.items():
            if value is None:
                label = "hmac" if name == "hmac-sha256" else name.replace("-", " ")
                raise InvalidPayload(f"missing {label} header (X-Shopify-{name.title()})")
        shop = normalise_shop_domain(required["shop-domain"])
        if shop is None:
            raise InvalidPayload(f"shop domain header {required['shop-domain']!r} is not a *.myshopify.com domain")
        return cls(topic=required["topic"].lower(), shop_domain=shop, webhook_id=required["webhook-id"],
                   event_id=_header(lowered, "event-id"), triggered_at=_timestamp(_header(lowered, "triggered-at")),
                   api_version=_header(lowered, "api-version"), signature=required["hmac-sha256"])
