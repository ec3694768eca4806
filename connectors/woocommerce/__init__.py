"""WooCommerce REST API client library (keys, wc-auth, webhooks, sync); see issue #4."""
