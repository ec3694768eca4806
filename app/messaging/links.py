"""Signed links a message carries: unsubscribe, open pixel and click redirects; each salt signs one kind only."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import urlsplit

from itsdangerous import BadSignature, Serializer, URLSafeSerializer
from itsdangerous.encoding import base64_encode

from app.config import Settings

UNSUBSCRIBE_SALT = "messaging.unsubscribe"
CLICK_SALT = "messaging.click"
OPEN_SALT = "messaging.open"


class InvalidLink(Exception):
    """The token was not signed by us for this purpose, or its contents are malformed."""


@dataclass(frozen=True)
class UnsubscribeTarget:
    shop_id: int
    customer_id: int | None
    channel: str
    address: str
    message_id: int | None


class _UncompressedSerializer(URLSafeSerializer):
    """Writes tokens without trying zlib first (reads both kinds). Click and open links are signed for every
    message sent and only ever sit in email HTML, where a few more characters cost nothing; unsubscribe links,
    which also go in SMS, stay compressed."""

    def dump_payload(self, obj) -> bytes:
        return base64_encode(Serializer.dump_payload(self, obj))


def _serializer(settings: Settings, salt: str) -> URLSafeSerializer:
    return _serializer_for(settings.secret_key, salt)


@functools.lru_cache(maxsize=32)
def _serializer_for(secret_key: str, salt: str) -> URLSafeSerializer:
    kind = URLSafeSerializer if salt == UNSUBSCRIBE_SALT else _UncompressedSerializer
    return kind(secret_key, salt=salt)


def unsubscribe_token(settings: Settings, target: UnsubscribeTarget) -> str:
    return _serializer(settings, UNSUBSCRIBE_SALT).dumps(
        [target.shop_id, target.customer_id, target.channel, target.address, target.message_id])


def read_unsubscribe_token(settings: Settings, token: str) -> UnsubscribeTarget:
    try:
        shop_id, customer_id, channel, address, message_id = _serializer(settings, UNSUBSCRIBE_SALT).loads(token)
    except (BadSignature, ValueError, TypeError):
        raise InvalidLink("not an unsubscribe link of ours") from None
    if not (isinstance(shop_id, int) and isinstance(channel, str) and isinstance(address, str)
            and (customer_id is None or isinstance(customer_id, int)) and (message_id is None or isinstance(message_id, int))):
        raise InvalidLink("malformed unsubscribe link")
    return UnsubscribeTarget(shop_id, customer_id, channel, address, message_id)


def unsubscribe_url(settings: Settings, target: UnsubscribeTarget) -> str:
    return f"{settings.public_url}/m/u/{unsubscribe_token(settings, target)}"


def click_url(settings: Settings, shop_id: int, message_id: int, url: str) -> str:
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError(f"only http(s) links can be tracked, got {url!r}")
    return f"{settings.public_url}/m/c/{_serializer(settings, CLICK_SALT).dumps([shop_id, message_id, url])}"


def read_click_token(settings: Settings, token: str) -> tuple[int, int, str]:
    try:
        shop_id, message_id, url = _serializer(settings, CLICK_SALT).loads(token)
    except (BadSignature, ValueError, TypeError):
        raise InvalidLink("not a click link of ours") from None
    if not (isinstance(shop_id, int) and isinstance(message_id, int) and isinstance(url, str)):
        raise InvalidLink("malformed click link")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidLink("click link to something that is not a web page")
    return shop_id, message_id, url


def open_pixel_url(settings: Settings, shop_id: int, message_id: int) -> str:
    return f"{settings.public_url}/m/o/{_serializer(settings, OPEN_SALT).dumps([shop_id, message_id])}.gif"


def read_open_token(settings: Settings, token: str) -> tuple[int, int]:
    try:
        shop_id, message_id = _serializer(settings, OPEN_SALT).loads(token)
    except (BadSignature, ValueError, TypeError):
        raise InvalidLink("not an open pixel of ours") from None
    if not (isinstance(shop_id, int) and isinstance(message_id, int)):
        raise InvalidLink("malformed open pixel")
    return shop_id, message_id
