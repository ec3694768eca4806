"""A connected WooCommerce store: its normalised URL, its keys and webhook secret, and a client built on them."""
from __future__ import annotations

import datetime as dt
import secrets
from urllib.parse import urlsplit, urlunsplit

from app.config import Settings
from app.models import Shop
from connectors.errors import ConnectorError, UnsafeURL
from connectors.http import UrlPolicy
from connectors.woocommerce.auth import Credentials


def url_policy(settings: Settings) -> UrlPolicy:
    """Production refuses store URLs on private or loopback addresses; tests may allow them by configuration."""
    return UrlPolicy(allow_private=settings.allow_private_store_urls)


def normalise_store_url(value: object) -> str:
    """`Sklep.Example.pl/` → `https://sklep.example.pl`; a WordPress in a sub-folder keeps its path.

    Raises UnsafeURL naming the problem for anything that is not an absolute http(s) URL of a host.
    """
    if not isinstance(value, str) or not value.strip():
        raise UnsafeURL("store_url is required")
    text = value.strip()
    if "://" not in text:
        text = f"https://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeURL(f"{value!r} is not an http(s) store address")
    if parts.username or parts.password:
        raise UnsafeURL("credentials in the store URL are not allowed")
    if parts.query or parts.fragment:
        raise UnsafeURL("the store URL must not carry a query or fragment")
    host = parts.hostname.lower() + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def new_webhook_secret() -> str:
    """ASCII letters and digits only: WooCommerce's admin screen sanitises secrets as text."""
    return secrets.token_hex(24)


def store_credentials(shop: Shop, credentials: Credentials, *, key_id: int | None = None) -> None:
    held = shop.credentials.reveal() if shop.credentials is not None else {}
    shop.credentials = {
        "consumer_key": credentials.consumer_key,
        "consumer_secret": credentials.consumer_secret,
        "key_id": key_id,
        "webhook_secret": held.get("webhook_secret") or new_webhook_secret(),
    }


def credentials_of(shop: Shop) -> Credentials:
    held = shop.credentials.reveal() if shop.credentials is not None else {}
    return Credentials(held.get("consumer_key", ""), held.get("consumer_secret", ""))


def webhook_secrets(shop: Shop) -> list[str]:
    """The secret our webhooks are signed with (and the previous one while a rotation settles)."""
    held = shop.credentials.reveal() if shop.credentials is not None else {}
    return [value for value in (held.get("webhook_secret"), held.get("previous_webhook_secret")) if value]


def client_for(settings: Settings, store_url: str, credentials: Credentials, *, quick: bool = False):
    from connectors.woocommerce.client import WooCommerceClient
    from connectors.woocommerce.retry import RetryPolicy

    if quick:  # live reads that postpone rather than wait: one short retry, short timeouts
        return WooCommerceClient(store_url, credentials, policy=url_policy(settings), concurrency=1,
                                 retry=RetryPolicy(max_attempts=2, base_seconds=0.2, max_seconds=1.0),
                                 timeout=(3.0, 10.0))
    return WooCommerceClient(store_url, credentials, policy=url_policy(settings), concurrency=3)


def store_client(settings: Settings, shop: Shop, *, quick: bool = False):
    """The REST client for a connected store, with its keys and the URL policy of this deployment."""
    return client_for(settings, shop.domain, credentials_of(shop), quick=quick)


def own_abandoned_cart_email(client) -> bool:
    """Whether the store sends its own abandoned-cart email (a WC_Email whose id names abandonment is enabled).

    WooCommerce lists every email as a settings group `email_<id>`; an enabled one about abandoned carts means
    the owner already has a sender for them, so our flows stand back unless the owner chooses us.
    """
    try:
        groups = client.request("GET", "settings").data or []
    except ConnectorError:
        return False
    for group in groups:
        group_id = str((group or {}).get("id") or "")
        if group_id.startswith("email_") and "abandon" in group_id:
            try:
                options = client.request("GET", f"settings/{group_id}").data or []
            except ConnectorError:
                continue
            if any(o.get("id") == "enabled" and o.get("value") == "yes" for o in options if isinstance(o, dict)):
                return True
    return False


def check_store(settings: Settings, store_url: str, credentials: Credentials) -> dict:
    """Check the keys with a real call and read what the store can do; AuthError when the keys do not work."""
    client = client_for(settings, store_url, credentials)
    found = client.discover()
    if not found.rest_api:
        raise ConnectorError(f"{store_url} has no WooCommerce REST API (wc/v3 is not among its namespaces)")
    client.check_credentials()
    return {
        "shipment_tracking": found.shipment_tracking,
        "advanced_shipment_tracking": found.advanced_shipment_tracking,
        "store_api": found.store_api,
        "abandoned_cart_plugins": list(found.abandoned_cart_namespaces),
        "own_abandoned_cart_email": own_abandoned_cart_email(client),
        "timezone": found.timezone,
        "name": found.name,
        "checked_at": dt.datetime.now(dt.timezone.utc).isoformat(),
    }
