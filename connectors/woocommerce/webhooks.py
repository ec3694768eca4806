"""Webhook deliveries: the raw-body HMAC, the unsigned creation ping, the X-WC-Webhook-* headers and a dedupe key.

WooCommerce (`includes/class-wc-webhook.php`, `deliver()`) signs `trim(wp_json_encode($payload))` with
`base64(hmac_sha256(body, secret))`. PHP escapes `/` as `\\/` and non-ASCII as `\\uXXXX`, so only the raw bytes
verify. It never retries a failed delivery, coalesces updates (the payload is built at delivery time), and
`X-WC-Webhook-Delivery-ID` is `wp_hash(webhook_id . time())`, i.e. not unique: deduplicate on the resource's
own id and modification time plus the body hash instead.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from connectors.errors import InvalidPayload
from connectors.signatures import body_signed_by, sign_body

# Core topics we subscribe to, plus Abandoned Cart Lite's when the plugin is there (it refuses them otherwise).
SUBSCRIPTION_TOPICS: tuple[str, ...] = (
    "order.created", "order.updated", "order.deleted", "order.restored",
    "customer.created", "customer.updated", "customer.deleted",
    "product.updated",
)
ABANDONED_CART_LITE_TOPICS: tuple[str, ...] = ("wcap_cart.cutoff", "wcap_cart.recovered")

_PING = re.compile(rb"^webhook_id=(\d+)$")


def sign_webhook(raw_body: bytes, secret: str) -> str:
    """The X-WC-Webhook-Signature value for these bytes (for the fake shop and tests)."""
    return sign_body(raw_body, secret)


def verify_webhook(raw_body: bytes, signature: str | None, secrets: Sequence[str]) -> bool:
    """True when one of our secrets signed exactly these bytes; several while a rotated secret is being PUT."""
    return body_signed_by(raw_body, signature, secrets)


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(key).lower(): str(value).strip() for key, value in headers.items()}


def ping_webhook_id(raw_body: bytes, headers: Mapping[str, str]) -> int | None:
    """The webhook id when this request is WooCommerce's unsigned creation ping (`webhook_id=N`), else None.

    The ping carries no X-WC-Webhook-* headers and no signature; answer it 200 and do nothing else. A request
    that has a signature header is never a ping, whatever its body says.
    """
    if "x-wc-webhook-signature" in _lowered(headers):
        return None
    match = _PING.match(raw_body.strip())
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class WebhookDelivery:
    """What the X-WC-Webhook-* headers say about one delivery."""

    topic: str  # order.updated, wcap_cart.cutoff, action.woocommerce_order_status_changed
    resource: str
    event: str
    webhook_id: str
    delivery_id: str | None  # informational only: not unique (wp_hash(webhook id . second))
    source: str | None  # the shop's home_url('/'), with its trailing slash
    signature: str

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> "WebhookDelivery":
        lowered = _lowered(headers)

        def header(name: str) -> str | None:
            return lowered.get(f"x-wc-webhook-{name}") or None

        for name in ("topic", "signature", "id"):
            if header(name) is None:
                raise InvalidPayload(f"missing X-WC-Webhook-{name.title()} header")
        topic = header("topic").lower()
        resource, _, event = topic.partition(".")
        return cls(topic=topic, resource=(header("resource") or resource).lower(), event=(header("event") or event),
                   webhook_id=header("id"), delivery_id=header("delivery-id"), source=header("source"),
                   signature=header("signature"))


def parse_body(raw_body: bytes) -> dict[str, Any]:
    """The JSON object of a verified delivery; InvalidPayload when it is not one."""
    try:
        body = json.loads(raw_body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidPayload("webhook body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidPayload("webhook body is not a JSON object")
    return body


def dedupe_key(delivery: WebhookDelivery, raw_body: bytes) -> str:
    """A key equal for two deliveries of the same state of the same resource, and only then.

    `resource:id:date_modified_gmt:sha256(body)`; the id and modification time make the key readable and let
    newer-wins ordering use it, the body hash separates two states saved within the same second.
    """
    digest = hashlib.sha256(raw_body).hexdigest()
    try:
        body = json.loads(raw_body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        body = None
    body = body if isinstance(body, dict) else {}
    resource_id = body.get("id", body.get("arg", body.get("webhook_resource_id", "")))
    modified = body.get("date_modified_gmt") or ""
    return f"{delivery.resource}:{resource_id}:{modified}:{digest}"


def modified_at(body: Mapping[str, Any]) -> dt.datetime | None:
    """The resource's `date_modified_gmt` as UTC, for newer-wins; None when the payload has none (e.g. deletes)."""
    value = body.get("date_modified_gmt")
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value)).replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None


@dataclass(frozen=True)
class Webhook:
    """A webhook as `GET /wc/v3/webhooks` lists it. The API never returns the secret, nor a failure count."""

    id: int
    name: str
    status: str  # active | paused | disabled (WooCommerce disables after repeated failed deliveries)
    topic: str
    delivery_url: str

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> "Webhook":
        if payload.get("id") in (None, ""):
            raise InvalidPayload("webhook has no id")
        return cls(id=int(payload["id"]), name=str(payload.get("name") or ""), status=str(payload.get("status") or ""),
                   topic=str(payload.get("topic") or ""), delivery_url=str(payload.get("delivery_url") or ""))


@dataclass(frozen=True)
class WebhookPlan:
    """What it takes to make the shop's webhooks match what we want; empty when all is well."""

    to_create: tuple[str, ...]  # topics with no webhook to our URL
    to_enable: tuple[Webhook, ...]  # ours, but disabled (by failures) or paused
    to_delete: tuple[Webhook, ...]  # ours, duplicates of a topic already covered

    @property
    def healthy(self) -> bool:
        return not (self.to_create or self.to_enable or self.to_delete)

    @property
    def gap_suspected(self) -> bool:
        """True when deliveries were certainly lost (a webhook had been disabled): backfill by polling."""
        return any(hook.status == "disabled" for hook in self.to_enable)


def plan_webhooks(existing: Sequence[Webhook], topics: Sequence[str], delivery_url: str) -> WebhookPlan:
    """Compare the shop's webhooks with the topics we want delivered to `delivery_url` (ours are matched by URL)."""
    ours = [hook for hook in existing if hook.delivery_url == delivery_url]
    to_create, to_enable, to_delete = [], [], []
    for topic in topics:
        mine = sorted((hook for hook in ours if hook.topic == topic),
                      key=lambda hook: (hook.status != "active", hook.id))
        if not mine:
            to_create.append(topic)
            continue
        keep, *extra = mine
        if keep.status != "active":
            to_enable.append(keep)
        to_delete.extend(extra)
    return WebhookPlan(tuple(to_create), tuple(to_enable), tuple(to_delete))
