"""Webhook body signatures as Shopify and WooCommerce both make them: base64 HMAC-SHA256 of the raw bytes."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Sequence


def sign_body(raw_body: bytes, secret: str) -> str:
    """The base64 HMAC-SHA256 of exactly these bytes (what the platform puts in its signature header)."""
    return base64.b64encode(hmac.new(secret.encode("utf-8"), raw_body, hashlib.sha256).digest()).decode("ascii")


def body_signed_by(raw_body: bytes, signature: str | None, secrets: Sequence[str]) -> bool:
    """True when one of `secrets` signed exactly these bytes (constant-time compare; re-serialised JSON never
    verifies). Several secrets: during a rotation deliveries may carry either the old or the new one."""
    if not signature:
        return False
    try:
        provided = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    # hmac.digest is the one-shot C path: a third of hmac.new(...).digest()'s cost, on every webhook.
    return any(hmac.compare_digest(hmac.digest(secret.encode("utf-8"), raw_body, "sha256"), provided)
               for secret in secrets if secret)
