"""Shop domain validation: only `<name>.myshopify.com`, before any redirect or token request."""
from __future__ import annotations

import re

# Anchored with fullmatch: `$` alone would let a trailing newline through.
_SHOP = re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com")
_BARE_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
_SCHEME = re.compile(r"^https?://")


def normalise_shop_domain(value: str | None) -> str | None:
    """`my-shop`, `https://My-Shop.myshopify.com/` → `my-shop.myshopify.com`; anything else → None."""
    if not isinstance(value, str):
        return None
    candidate = _SCHEME.sub("", value.strip().lower()).rstrip("/")
    if _BARE_NAME.fullmatch(candidate):
        candidate = f"{candidate}.myshopify.com"
    return candidate if _SHOP.fullmatch(candidate) else None
