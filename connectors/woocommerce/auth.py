"""REST API keys and how a request carries them: HTTP Basic over HTTPS, OAuth 1.0a one-legged signatures over HTTP.

The OAuth signer follows `WC_REST_Authentication::check_oauth_signature` (woocommerce/woocommerce,
`plugins/woocommerce/includes/class-wc-rest-authentication.php`) step by step, because WooCommerce does not
accept "standard" OAuth, it accepts exactly its own reading of it:

1. the signed parameters are the query (and form) parameters plus the `oauth_*` ones, never a JSON body;
2. `oauth_signature` is removed, the rest sorted by their *decoded* keys in byte order (`uksort(..., 'strcmp')`);
3. keys and values are `rawurlencode`d (RFC 3986, `~` kept), each `key=value` string is encoded once more and
   the strings are joined with `%26`;
4. string to sign = `METHOD&rawurlencode(home_url + path)&joined`; key = `consumer_secret&`; the signature is
   base64 of the raw HMAC (SHA-256 or SHA-1).

The timestamp must be within 15 minutes of the shop's clock and a nonce may not repeat for a key.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping
from urllib.parse import quote, urlencode, urlsplit

SIGNATURE_METHODS = {"HMAC-SHA256": hashlib.sha256, "HMAC-SHA1": hashlib.sha1}


@dataclass(frozen=True)
class Credentials:
    """A WooCommerce REST API key pair (`ck_…`, `cs_…`); the secret never appears in repr or logs."""

    consumer_key: str
    consumer_secret: str = field(repr=False)

    def __post_init__(self):
        if not self.consumer_key or not self.consumer_secret:
            raise ValueError("both consumer key and consumer secret are required")


def rawurlencode(value: str) -> str:
    """PHP's rawurlencode: every byte except A-Z a-z 0-9 - _ . ~ is percent-encoded (space is %20, / is %2F)."""
    return quote(value, safe="~")


def _php_string(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else ""
    if value is None:
        return ""
    return str(value)


def signature_base_string(method: str, base_url: str, params: Mapping[str, object]) -> str:
    """The exact string WooCommerce signs for these decoded parameters (without oauth_signature).

    `base_url` is the shop's home URL joined with the request path, without query string. Values must be
    scalars: WooCommerce list parameters (`include`, `status`) take comma-separated strings.
    """
    pairs = []
    for key in sorted((k for k in params if k != "oauth_signature"), key=lambda k: k.encode("utf-8")):
        value = params[key]
        if isinstance(value, (list, tuple, dict, set)):
            raise TypeError(f"parameter {key!r}: send lists as comma-separated strings")
        pairs.append(rawurlencode(f"{rawurlencode(key)}={rawurlencode(_php_string(value))}"))
    return f"{method.upper()}&{rawurlencode(base_url)}&{'%26'.join(pairs)}"


def oauth_signature(method: str, base_url: str, params: Mapping[str, object], consumer_secret: str,
                    signature_method: str = "HMAC-SHA256") -> str:
    """Base64 HMAC over `signature_base_string`, keyed with `consumer_secret&` (no token secret)."""
    if signature_method not in SIGNATURE_METHODS:
        raise ValueError(f"signature method must be one of {', '.join(SIGNATURE_METHODS)}")
    digest = hmac.new(f"{consumer_secret}&".encode("utf-8"),
                      signature_base_string(method, base_url, params).encode("utf-8"),
                      SIGNATURE_METHODS[signature_method]).digest()
    return base64.b64encode(digest).decode("ascii")


def oauth_params(method: str, base_url: str, params: Mapping[str, object], credentials: Credentials, *,
                 timestamp: int | None = None, nonce: str | None = None,
                 signature_method: str = "HMAC-SHA256") -> dict[str, str]:
    """`params` plus the five oauth_* parameters, signed; send them all in the query string."""
    signed = {key: _php_string(value) for key, value in params.items()}
    signed.update({
        "oauth_consumer_key": credentials.consumer_key,
        "oauth_timestamp": str(int(time.time()) if timestamp is None else timestamp),
        "oauth_nonce": nonce or secrets.token_hex(16),
        "oauth_signature_method": signature_method,
    })
    signed["oauth_signature"] = oauth_signature(method, base_url, signed, credentials.consumer_secret,
                                                signature_method)
    return signed


def query_string(params: Mapping[str, str]) -> str:
    """A query string PHP decodes back to exactly these values (spaces as %20, `+` and `/` escaped)."""
    return urlencode(list(params.items()), quote_via=lambda text, *args: quote(text, safe="~"))


@dataclass(frozen=True)
class RequestAuth:
    """How one request carries the key: extra query parameters and headers, computed per request."""

    params: dict[str, str]
    headers: dict[str, str]


AUTH_MODES = ("basic", "query", "oauth")


def choose_mode(store_url: str, requested: str = "auto") -> str:
    """`auto` means Basic on HTTPS and OAuth on plain HTTP, which is what WooCommerce itself accepts."""
    if requested == "auto":
        return "basic" if urlsplit(store_url).scheme == "https" else "oauth"
    if requested not in AUTH_MODES:
        raise ValueError(f"auth mode must be auto or one of {', '.join(AUTH_MODES)}")
    return requested


def authorise(mode: str, credentials: Credentials, method: str, base_url: str, params: Mapping[str, object], *,
              clock: Callable[[], float] = time.time) -> RequestAuth:
    """The query parameters (including the caller's own) and headers that authenticate this request.

    `query` puts the key pair in the query string: WooCommerce reads it only over HTTPS, for servers that
    strip the Authorization header (its docs: "Consumer key is missing").
    """
    plain = {key: _php_string(value) for key, value in params.items()}
    if mode == "basic":
        token = base64.b64encode(f"{credentials.consumer_key}:{credentials.consumer_secret}".encode()).decode()
        return RequestAuth(plain, {"Authorization": f"Basic {token}"})
    if mode == "query":
        return RequestAuth({**plain, "consumer_key": credentials.consumer_key,
                            "consumer_secret": credentials.consumer_secret}, {})
    if mode == "oauth":
        return RequestAuth(oauth_params(method, base_url, plain, credentials, timestamp=int(clock())), {})
    raise ValueError(f"unknown auth mode {mode!r}")
