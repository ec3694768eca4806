"""WooCommerce REST API client library (keys, wc-auth, webhooks, sync, write-back); see issue #4.

The service's glue uses only what is exported here:

- `Credentials(consumer_key, consumer_secret)`; `WooCommerceClient(store_url, credentials, policy=UrlPolicy(),
  auth="auto", timeout=..., retry=RetryPolicy(), concurrency=3)`: `discover()`, `check_credentials()`,
  `orders_modified_since()` / `raw_orders_modified_since()`, `checkout_draft_orders()`, `customers()`,
  `products_modified_since()`, `products_by_id()`, `refunds_since()`, `order_refunds()`, `get_order()` /
  `get_order_raw()`, `webhooks()`, `create_webhook()`, `update_webhook()`, `enable_webhook()`, `delete_webhook()`,
  `set_order_status()`, `order_notes()`, `add_order_note()`, `tracking_items()`, `add_tracking()`,
  `write_tracking()`, `create_coupon()`, `find_coupon()`; `request()` and `iter_raw()` for anything else; `close()`.
  There is deliberately no way to create refunds.
- `authorize_url()`, `new_state_token()`, `parse_callback()` for the one-click `/wc-auth/v1/authorize` flow.
- `verify_webhook()`, `ping_webhook_id()`, `WebhookDelivery.from_headers()`, `parse_body()`, `dedupe_key()`,
  `modified_at()`, `plan_webhooks()` for deliveries and webhook health.
- mapping: `order_from_payload()`, `customer_from_payload()`, `product_from_payload()`, `refund_from_payload()`,
  `cart_from_draft_order()`, `cart_from_abandoned_cart_lite()`, `cart_from_store_api()`, `is_unpaid()`,
  `is_silent()`, `phone_e164()`, `refund_ids()`, `tracking_numbers_in_order()`.

Nothing here imports Flask, SQLAlchemy or `app`; errors are the classes of `connectors.errors` plus `ApiError`,
`UnsupportedTopic` and `CouponCodeTaken`.
"""
from __future__ import annotations

from connectors.woocommerce.auth import Credentials, oauth_signature, signature_base_string
from connectors.woocommerce.client import (
    ApiError, Capabilities, Coupon, CouponCodeTaken, OrderNote, PageProgress, TrackingItem, TrackingWrite,
    UnsupportedTopic, WooCommerceClient, CUSTOMER_FIELDS, ORDER_FIELDS, PRODUCT_FIELDS,
)
from connectors.woocommerce.mapping import (
    PENDING_PAYMENT_METHODS, SILENT_STATUSES, cart_from_abandoned_cart_lite, cart_from_draft_order,
    cart_from_store_api, customer_from_payload, tracking_numbers_in_order, draft_cart_token, format_gmt, is_silent, is_unpaid, order_from_payload, parse_gmt,
    phone_e164, product_from_payload, recovery_url, refund_from_payload, refund_ids,
)
from connectors.woocommerce.retry import RetryPolicy
from connectors.woocommerce.wc_auth import GrantedKey, authorize_url, new_state_token, parse_callback
from connectors.woocommerce.webhooks import (
    ABANDONED_CART_LITE_TOPICS, SUBSCRIPTION_TOPICS, Webhook, WebhookDelivery, WebhookPlan, dedupe_key,
    modified_at, parse_body, ping_webhook_id, plan_webhooks, sign_webhook, verify_webhook,
)

__all__ = [
    "ABANDONED_CART_LITE_TOPICS", "ApiError", "CUSTOMER_FIELDS", "Capabilities", "Coupon", "CouponCodeTaken",
    "Credentials", "GrantedKey", "ORDER_FIELDS", "OrderNote", "PENDING_PAYMENT_METHODS", "PRODUCT_FIELDS",
    "PageProgress", "RetryPolicy", "SILENT_STATUSES", "SUBSCRIPTION_TOPICS", "TrackingItem", "TrackingWrite",
    "UnsupportedTopic", "Webhook", "WebhookDelivery", "WebhookPlan", "WooCommerceClient", "authorize_url",
    "cart_from_abandoned_cart_lite", "cart_from_draft_order", "cart_from_store_api", "tracking_numbers_in_order", "customer_from_payload", "dedupe_key",
    "draft_cart_token", "format_gmt", "is_silent", "is_unpaid", "modified_at", "new_state_token",
    "oauth_signature", "order_from_payload", "parse_body", "parse_callback", "parse_gmt", "phone_e164",
    "ping_webhook_id", "plan_webhooks", "product_from_payload", "recovery_url", "refund_from_payload",
    "refund_ids", "sign_webhook", "signature_base_string", "verify_webhook",
]
