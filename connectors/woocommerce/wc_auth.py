"""The one-click key flow: the `/wc-auth/v1/authorize` URL we send the shop owner to, and the keys it posts back.

WooCommerce (`includes/class-wc-auth.php`) requires all five parameters, `scope` in read | write | read_write and
a `callback_url` starting with https://. After the owner approves, it POSTs the new key as JSON to the callback
(unsigned!) and deletes the key again unless the callback answers exactly HTTP 200. `user_id` is echoed back as
given, so we send an unguessable one-time token there and bind the keys to the shop through it.
"""
from __future__ import annotations

import hmac
import json
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from connectors.errors import InvalidPayload
from connectors.woocommerce.auth import Credentials

SCOPES = ("read", "write", "read_write")
PERMISSIONS = ("read", "write", "read_write")


def new_state_token() -> str:
    """A one-time `user_id` for the authorize URL: 32 bytes of randomness, URL-safe."""
    return secrets.token_urlsafe(32)


def authorize_url(store_url: str, *, app_name: str, user_id: str, return_url: str, callback_url: str,
                  scope: str = "read_write") -> str:
    """Where to send the shop owner's browser to approve a key for us."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    if not callback_url.startswith("https://"):
        raise ValueError("WooCommerce refuses a callback_url that does not start with https://")
    if urlsplit(return_url).scheme not in ("http", "https"):
        raise ValueError("return_url must be an absolute http(s) URL")
    if not app_name.strip() or not str(user_id).strip():
        raise ValueError("app_name and user_id are required")
    query = urlencode({"app_name": app_name, "scope": scope, "user_id": user_id, "return_url": return_url,
                       "callback_url": callback_url})
    return f"{store_url.rstrip('/')}/wc-auth/v1/authorize?{query}"


@dataclass(frozen=True)
class GrantedKey:
    """What WooCommerce posted to our callback: a key pair, its id in the shop and its permissions."""

    key_id: int
    user_id: str
    permissions: str
    credentials: Credentials = field(repr=False)


def parse_callback(raw_body: bytes, expected_user_id: str | None = None) -> GrantedKey:
    """Read the callback body; when `expected_user_id` is given it must match (constant time) or this raises.

    The body is `{"key_id":1,"user_id":"…","consumer_key":"ck_…","consumer_secret":"cs_…","key_permissions":"read_write"}`.
    Raises InvalidPayload for anything else; the caller then answers non-200 and WooCommerce revokes the key.
    """
    try:
        body = json.loads(raw_body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise InvalidPayload("wc-auth callback body is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidPayload("wc-auth callback body is not a JSON object")
    missing = [name for name in ("key_id", "user_id", "consumer_key", "consumer_secret", "key_permissions")
               if body.get(name) in (None, "")]
    if missing:
        raise InvalidPayload(f"wc-auth callback lacks {', '.join(missing)}")
    user_id = str(body["user_id"])
    if expected_user_id is not None and not hmac.compare_digest(user_id.encode(), str(expected_user_id).encode()):
        raise InvalidPayload("wc-auth callback user_id does not match the one we issued")
    consumer_key, consumer_secret = str(body["consumer_key"]), str(body["consumer_secret"])
    if not consumer_key.startswith("ck_") or not consumer_secret.startswith("cs_"):
        raise InvalidPayload("wc-auth callback keys are not ck_/cs_ keys")
    permissions = str(body["key_permissions"])
    if permissions not in PERMISSIONS:
        raise InvalidPayload(f"wc-auth callback has unknown key_permissions {permissions!r}")
    try:
        key_id = int(body["key_id"])
    except (TypeError, ValueError):
        raise InvalidPayload("wc-auth callback key_id is not a number") from None
    return GrantedKey(key_id=key_id, user_id=user_id, permissions=permissions,
                      credentials=Credentials(consumer_key, consumer_secret))
