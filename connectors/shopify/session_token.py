"""App Bridge session tokens: HS256 JWTs signed with the app's client secret, checked without PyJWT."""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Sequence
from urllib.parse import urlsplit

from connectors.errors import SignatureError
from connectors.shopify.shop_domain import normalise_shop_domain

# sub and sid are optional: checkout UI extension tokens come without them (shopify-api-ruby 14.9).
_REQUIRED_CLAIMS = ("iss", "dest", "aud", "exp")


@dataclass(frozen=True)
class SessionClaims:
    shop: str
    user_id: str | None
    session_id: str | None
    expires_at: dt.datetime


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _sign(signing_input: str, secret: str) -> bytes:
    return hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()


def encode_session_token(claims: dict, secret: str) -> str:
    """An HS256 token with these claims, as App Bridge would send it (for tests)."""
    header = _b64encode(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    signature = _b64encode(_sign(f"{header}.{payload}", secret))
    return f"{header}.{payload}.{signature}"


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "")


def decode_session_token(token: str, client_id: str, secrets: Sequence[str], now: dt.datetime,
                         leeway_seconds: int = 10) -> SessionClaims:
    """The verified claims of a session token; SignatureError with the failed check otherwise."""
    try:
        header_part, payload_part, signature_part = token.split(".")
        header = json.loads(_b64decode(header_part))
        claims = json.loads(_b64decode(payload_part))
        signature = _b64decode(signature_part)
    except (AttributeError, ValueError, binascii.Error):
        raise SignatureError("malformed token") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise SignatureError("malformed token")
    # The algorithm is pinned, never taken from the token: `none` or RS256-with-our-secret must not pass.
    if header.get("alg") != "HS256":
        raise SignatureError(f"unsupported algorithm {header.get('alg')!r}")
    signing_input = f"{header_part}.{payload_part}"
    if not any(hmac.compare_digest(_sign(signing_input, secret), signature) for secret in secrets if secret):
        raise SignatureError("signature mismatch")

    for claim in _REQUIRED_CLAIMS:
        if claims.get(claim) in (None, ""):
            raise SignatureError(f"missing claim {claim}")
    moment = now.timestamp()
    try:
        expires = float(claims["exp"])
        not_before = float(claims["nbf"]) if claims.get("nbf") is not None else None
    except (TypeError, ValueError):
        raise SignatureError("malformed time claims") from None
    if moment > expires + leeway_seconds:
        raise SignatureError("token expired")
    # App Bridge often sends an nbf slightly in the future, hence the leeway.
    if not_before is not None and moment < not_before - leeway_seconds:
        raise SignatureError("token not yet valid")
    audience = claims["aud"]
    if not (audience == client_id or (isinstance(audience, list) and client_id in audience)):
        raise SignatureError("audience mismatch")

    issuer, destination = str(claims["iss"]), str(claims["dest"])
    scheme, host = _origin(issuer)
    # The host must already be a full shop domain; a bare name would otherwise be completed into one.
    shop = normalise_shop_domain(host)
    if shop is None or shop != host or scheme != "https":
        raise SignatureError("issuer is not a shop")
    if _origin(issuer) != _origin(destination):
        raise SignatureError("issuer and destination differ")
    subject, session = claims.get("sub"), claims.get("sid")
    return SessionClaims(shop=shop, user_id=str(subject) if subject not in (None, "") else None,
                         session_id=str(session) if session not in (None, "") else None,
                         expires_at=dt.datetime.fromtimestamp(expires, dt.timezone.utc))
