"""Signed WooCommerce cart recovery links: the cart's lines, when and how many, checked by the plugin before it restores.

A link is `<shop>/?store_companion_cart=<lines>&store_companion_issued=<t>&store_companion_lines=<n>`
`&store_companion_sig=<s>`. `<lines>` is readable: `ID:QTY` per line, comma-separated, each optionally followed by
`:ATTRIBUTE=VALUE` pairs (percent-encoded) that name the chosen options of a variation, e.g.
`31:1:attribute_pa_size=xl,12:2`. `<t>` is when the link was made (UTC, seconds since 1970) and `<n>` how many lines
the cart had: more than `<lines>` holds when the cart was too long for one link (MAX_URL), and the plugin then opens
the cart page, not the checkout, so the visitor sees that something is missing. The signature is Ed25519 over
CONTEXT, the shop's public key, `<t>`, `<n>` and `<lines>`, each on its own line; so a link made for one shop
restores nothing on another, and a changed id, quantity, time or count restores nothing at all. The plugin refuses
links older than 30 days or dated in its future (STORE_COMPANION_LINK_MAX_AGE and STORE_COMPANION_LINK_SKEW in
connectors/woocommerce/store-companion.php).

Where a link is minted, and who gets it: when the cart is captured (POST /s/cart), into Cart.recovery_url, which the
abandoned-cart messages read (app/automations/engine.py); so a link goes only to whoever the cart's reminders go to.
The endpoint never answers with it: it is public (the shop key is in every page, Origin is only a browser's promise),
and answering would sign any cart for anyone, to send to someone else. Minting at capture rather than when a message
is rendered keeps signing in the storefront and the automations unchanged: every cart update mints a fresh link
(the snippet posts the cart whenever it changes), so a link is as old as the cart it restores, and the reminders,
hours to days after the cart was left, fall well inside the 30 days. Someone who leaves a cart with their own
contact still receives a link to a cart they chose, as anyone can build a Shopify cart permalink; the 30 days bound
how long it works.

Ed25519 rather than a shared secret: the plugin needs only the service's public key (`GET /s/cart-link-key`), so
installing it stays "paste the address and the shop key". The key pair is derived from SECRET_KEY, so every worker
signs alike and rotating SECRET_KEY retires old links (the plugin then sends the visitor to their cart instead).
"""
from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import hmac
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PARAM = "store_companion_cart"
ISSUED_PARAM = "store_companion_issued"
LINES_PARAM = "store_companion_lines"
SIGNATURE_PARAM = "store_companion_sig"
CONTEXT = "store-companion cart link v2"
# The key pair's derivation label: unchanged since v1, so the key the plugins keep stays valid across link versions.
_KEY_LABEL = "store-companion cart link v1"
# Cart.recovery_url is String(2048); a cart too long for it is restored from its first lines and marked partial.
MAX_URL = 2048


@dataclass(frozen=True)
class LinkLine:
    item_id: str  # product id, or variation id for a variation (as the Store API's cart item `id`)
    quantity: int
    attributes: tuple[tuple[str, str], ...] = ()  # (raw attribute, e.g. "attribute_pa_size", chosen value)


@functools.lru_cache(maxsize=4)
def _signing_key(secret_key: str) -> Ed25519PrivateKey:
    seed = hmac.new(secret_key.encode("utf-8"), _KEY_LABEL.encode("ascii"), hashlib.sha256).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key(secret_key: str) -> str:
    """The key the plugin verifies links with: raw Ed25519 public key, base64url without padding."""
    return _b64(_signing_key(secret_key).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))


def encode_lines(lines: list[LinkLine] | tuple[LinkLine, ...]) -> str:
    def one(line: LinkLine) -> str:
        options = "".join(f":{quote(name, safe='')}={quote(value, safe='')}" for name, value in line.attributes)
        return f"{line.item_id}:{line.quantity}{options}"

    return ",".join(one(line) for line in lines)


def signed_message(shop_public_key: str, issued_at: int, line_count: int, lines_text: str) -> bytes:
    return f"{CONTEXT}\n{shop_public_key}\n{issued_at}\n{line_count}\n{lines_text}".encode("utf-8")


def sign(secret_key: str, shop_public_key: str, issued_at: int, line_count: int, lines_text: str) -> str:
    return _b64(_signing_key(secret_key).sign(signed_message(shop_public_key, issued_at, line_count, lines_text)))


def verify(public_key_text: str, shop_public_key: str, issued_at: int, line_count: int, lines_text: str,
           signature: str) -> bool:
    """The signature check the plugin does, in Python (without its age check): for tests and for checking a link by hand."""
    try:
        key = Ed25519PublicKey.from_public_bytes(_unb64(public_key_text))
        key.verify(_unb64(signature), signed_message(shop_public_key, issued_at, line_count, lines_text))
    except Exception:  # noqa: BLE001 - any malformed part means "not a link we made"
        return False
    return True


def recovery_link(origin: str, shop_public_key: str, secret_key: str, lines: list[LinkLine],
                  issued_at: dt.datetime) -> str | None:
    """The signed link restoring `lines` on the shop at `origin`, dated `issued_at`; None for an empty cart.

    A cart too long for MAX_URL keeps its first lines, and the link says how many the cart had."""
    issued = int(issued_at.timestamp())
    for count in range(len(lines), 0, -1):
        text = encode_lines(lines[:count])
        query = urlencode({PARAM: text, ISSUED_PARAM: issued, LINES_PARAM: len(lines),
                           SIGNATURE_PARAM: sign(secret_key, shop_public_key, issued, len(lines), text)},
                          safe=":,", quote_via=quote)
        url = f"{origin}/?{query}"
        if len(url) <= MAX_URL:
            return url
    return None
