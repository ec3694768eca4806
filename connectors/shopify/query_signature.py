"""The hex HMAC Shopify puts on install and OAuth callback query strings."""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from typing import Iterable, Mapping, Sequence

from connectors.errors import SignatureError

_UNSIGNED = ("hmac", "signature")


def _pairs(params: Mapping[str, object] | Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    if isinstance(params, Mapping):
        pairs: list[tuple[str, str]] = []
        for key, value in params.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            pairs += [(str(key), str(item)) for item in values]
        return pairs
    return [(str(key), str(value)) for key, value in params]


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """The message Shopify signs: decoded pairs, delimiters escaped, `ids[]` folded into a JSON list, sorted."""
    singles: list[tuple[str, str]] = []
    arrays: dict[str, list[str]] = {}
    for key, value in pairs:
        if key in _UNSIGNED:
            continue
        if key.endswith("[]"):
            arrays.setdefault(key[:-2], []).append(value)
        else:
            singles.append((key, value))
    # json.dumps keeps the space after each comma: Shopify signs `["2", "1"]`, not `["2","1"]`.
    singles += [(key, json.dumps(values)) for key, values in arrays.items()]
    encoded = []
    for key, value in singles:
        # Escaping the delimiters stops `a=1&b=2` inside a value from passing as two parameters.
        key = key.replace("%", "%25").replace("=", "%3D").replace("&", "%26")
        value = value.replace("%", "%25").replace("&", "%26")
        encoded.append(f"{key}={value}")
    return "&".join(sorted(encoded))


def _raw_query(pairs: Iterable[tuple[str, str]]) -> str:
    # Some deliveries are signed over the parameters exactly as received (shopify-api-php#412).
    return "&".join(sorted(f"{key}={value}" for key, value in pairs if key not in _UNSIGNED))


def _hex_hmac(message: str, secret: str) -> bytes:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest().encode()


def sign_query(params: Mapping[str, object] | Iterable[tuple[str, str]], secret: str) -> str:
    """The `hmac` value Shopify would add to these parameters (for tests and the fake server)."""
    return _hex_hmac(canonical_query(_pairs(params)), secret).decode()


def check_signed_query(pairs: Sequence[tuple[str, str]], secrets: Sequence[str], now: dt.datetime,
                       max_skew_seconds: int = 300) -> None:
    """Raise SignatureError unless one of our secrets signed these parameters recently."""
    pairs = _pairs(pairs)
    provided = [value for key, value in pairs if key == "hmac"]
    if not provided or not provided[0].strip():
        raise SignatureError("missing hmac")
    if len(provided) > 1:
        raise SignatureError("more than one hmac")
    signature = provided[0].strip().lower().encode()
    messages = (canonical_query(pairs), _raw_query(pairs))
    # Every secret is tried: during a rotation Shopify may still sign with the previous one.
    if not any(hmac.compare_digest(_hex_hmac(message, secret), signature)
               for secret in secrets if secret for message in messages):
        raise SignatureError("signature mismatch")
    timestamps = [value for key, value in pairs if key == "timestamp"]
    try:
        signed_at = int(timestamps[0])
    except (IndexError, ValueError):
        raise SignatureError("missing timestamp") from None
    if abs(now.timestamp() - signed_at) > max_skew_seconds:
        raise SignatureError("timestamp outside window")
