"""Shopify glue: install, webhooks, sync and write-back, built on the `connectors.shopify` library."""
