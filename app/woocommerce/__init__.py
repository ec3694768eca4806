"""The WooCommerce glue: connecting a store, its webhooks, sync and write-back, on connectors.woocommerce."""
