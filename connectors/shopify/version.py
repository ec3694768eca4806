"""The Shopify Admin API version this library is written and tested against."""
from __future__ import annotations

# Pinned, never "latest": unsupported versions silently fall forward and change payload shapes.
API_VERSION = "2026-01"
