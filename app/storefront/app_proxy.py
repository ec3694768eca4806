"""Shopify app proxy requests: the `signature` query parameter Shopify adds when it forwards a storefront request.

Per shopify.dev ("Authenticate app proxies"): drop `signature`, join each remaining key with its values
(repeated keys comma-joined) as `key=value`, sort, concatenate WITHOUT separators, and compare the hex
HMAC-SHA256 with the app's secret.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Iterable


def proxy_message(pairs: Iterable[tuple[str, str]]) -> str:
    grouped: dict[str, list[str]] = {}
    for key, value in pairs:
        if key != "signature":
            grouped.setdefault(key, []).append(value)
    return "".join(sorted(f"{key}={','.join(values)}" for key, values in grouped.items()))


def sign_proxy_query(pairs: Iterable[tuple[str, str]], secret: str) -> str:
    return hmac.new(secret.encode(), proxy_message(pairs).encode(), hashlib.sha256).hexdigest()


def verify_proxy_query(pairs: list[tuple[str, str]], secrets: Iterable[str]) -> bool:
    given = next((value for key, value in pairs if key == "signature"), "")
    if not given:
        return False
    return any(hmac.compare_digest(sign_proxy_query(pairs, secret), given) for secret in secrets if secret)
