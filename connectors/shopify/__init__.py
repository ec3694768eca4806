"""Shopify Admin GraphQL client library: OAuth, signatures, webhooks, mapping and sync, pinned to one API version."""
from __future__ import annotations

from connectors.shopify.auth import (
    OAuthClient, SessionClaims, TokenSet, authorize_url, check_signed_query, decode_session_token,
    encode_session_token, normalise_shop_domain, sign_query,
)
from connectors.shopify.client import (
    BulkOperation, CodeAlreadyExists, ShopifyClient, UserErrors, WebhookSubscription,
)
from connectors.shopify.mapping import FulfillmentUpdate, ReturnRequest, gid_tail, parse_time
from connectors.shopify.throttle import BucketLedger, BucketReading, reserve_from
from connectors.shopify.version import API_VERSION
from connectors.shopify.webhooks import (
    COMPLIANCE_TOPICS, SUBSCRIPTION_TOPICS, WebhookDelivery, enum_to_topic, sign_webhook, topic_to_enum,
    verify_webhook,
)

__all__ = [
    "API_VERSION", "BucketLedger", "BucketReading", "BulkOperation", "COMPLIANCE_TOPICS", "CodeAlreadyExists", "FulfillmentUpdate", "OAuthClient",
    "ReturnRequest", "SUBSCRIPTION_TOPICS", "SessionClaims", "ShopifyClient", "TokenSet", "UserErrors",
    "WebhookDelivery", "WebhookSubscription", "authorize_url", "check_signed_query", "decode_session_token",
    "encode_session_token", "enum_to_topic", "gid_tail", "normalise_shop_domain", "parse_time", "reserve_from", "sign_query",
    "sign_webhook", "topic_to_enum", "verify_webhook",
]
