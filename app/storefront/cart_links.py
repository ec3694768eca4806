"""Signed WooCommerce cart recovery links: the service signs the cart's lines, the shop's plugin checks the signature
before it rebuilds the cart.

A link is `<shop>/?store_companion_cart=<lines>&store_companion_sig=<signature>`. `<lines>` is readable:
`ID:QTY` per line, comma-separated, each optionally followed by `:ATTRIBUTE=VALUE` pairs (percent-encoded) that name
the chosen options of a variation, e.g. `31:1:attribute_pa_size=xl,12:2`. The signature is Ed25519 over
`store-companion cart link v1`, the shop's public key and `<lines>`, each on its own line; so a link made for one shop
restores nothing on another, and a changed id or quantity restores nothing at all. Ed25519 rather than a shared
secret: the plugin needs only the service's public key (`GET /s/cart-link-key`), so installing it stays "paste the
address and the shop key". The key pair is derived from SECRET_KEY, so every worker signs alike and rotating
SECRET_KEY retires old links (the plugin then sends the visitor to their cart instead).
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PARAM = "store_companion_cart"
SIGNATURE_PARAM = "store_companion_sig"
CONTEXT = "store-companion cart link v1"
# Cart.recovery_url is String(2048); a cart too long for it is restored from its first lines.
MAX_URL = 2048


@dataclass(frozen=True)
class LinkLine:
    item_id: str  # product id, or variation id for a variation (as the Store API's cart item `id`)
    quantity: int
    attributes: tuple[tuple[str, str], ...] = ()  # (raw attribute, e.g. "attribute_pa_size", chosen value)


@functools.lru_cache(maxsize=4)
def _signing_key(secret_key: str) -> Ed25519PrivateKey:
    seed = hmac.new(secret_key.encode("utf-8"), CONTEXT.encode("ascii"), hashlib.sha256).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def public_key(secret_key: str) -> str:
    """The key the plugin verifies links with: raw Ed25519 public key, base64url without padding."""
    return _b64(_signing_key(secret_key).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def encode_lines(lines: list[LinkLine] | tuple[LinkLine, ...]) -> str:
    def one(line: LinkLine) -> str:
        options = "".join(f":{quote(name, safe='')}={quote(value, safe='')}" for name, value in line.attributes)
        return f"{line.item_id}:{line.quantity}{options}"

    return ",".join(one(line) for line in lines)


def signed_message(shop_public_key: str, lines_text: str) -> bytes:
    return f"{CONTEXT}\n{shop_public_key}\n{lines_text}".encode("utf-8")


def sign(secret_key: str, shop_public_key: str, lines_text: str) -> str:
    return _b64(_signing_key(secret_key).sign(signed_message(shop_public_key, lines_text)))


def verify(public_key_text: str, shop_public_key: str, lines_text: str, signature: str) -> bool:
    """What the plugin does, in Python: for tests and for anyone checking a link by hand."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(public_key_text + "=" * (-len(public_key_text) % 4)))
        key.verify(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)), signed_message(shop_public_key, lines_text))
    except Exception:  # noqa: BLE001 - any malformed part means "not a link we made"
        return False
    return True


def recovery_link(origin: str, shop_public_key: str, secret_key: str, lines: list[LinkLine]) -> str | None:
    """The signed link restoring `lines` on the shop at `origin`; None for an empty cart."""
    for count in range(len(lines), 0, -1):
        text = encode_lines(lines[:count])
        query = urlencode({PARAM: text, SIGNATURE_PARAM: sign(secret_key, shop_public_key, text)}, safe=":,", quote_via=quote)
        url = f"{origin}/?{query}"
        if len(url) <= MAX_URL:
            return url
    return None
