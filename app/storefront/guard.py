"""The gate in front of every `/s/...` endpoint: which shop a public key names, its allowed origins, body caps, rate limits."""
from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, TypeVar
from urllib.parse import urlsplit

from flask import current_app, request
from sqlalchemy import select, text

from app.db import driver_transaction
from app.models import Shop
from app.storefront import ratelimit

log = logging.getLogger(__name__)
SHOP_CACHE_SECONDS = 30
ACCEPTING_STATUSES = ("connecting", "active", "needs_reauth")
T = TypeVar("T")


class Rejected(Exception):
    """A request the storefront endpoints refuse; becomes a JSON error naming the problem."""

    def __init__(self, status: int, error: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.error, self.message, self.headers = status, error, message, headers or {}


@dataclass(frozen=True)
class StorefrontShop:
    """What the public endpoints may know of a shop: enough to route and check, no credentials."""

    id: int
    public_key: str  # as stored: what cart recovery links are signed for
    platform: str
    domain: str
    locale: str
    hosts: frozenset[str]
    settings: dict

    @property
    def storefront(self) -> dict:
        value = self.settings.get("storefront")
        return value if isinstance(value, dict) else {}


def shop_hosts(shop: Shop) -> frozenset[str]:
    """The host names the shop's pages are served from: its domain plus settings["storefront_domains"]."""
    hosts = {_host(shop.domain)}
    extra = (shop.settings or {}).get("storefront_domains") or []
    if isinstance(extra, list):
        hosts.update(_host(item) for item in extra if isinstance(item, str) and item.strip())
    return frozenset(h for h in hosts if h)


def _host(value: str) -> str:
    value = value.strip().lower()
    if "://" in value:
        value = urlsplit(value).netloc
    return value.rstrip("/").rstrip(".")


class _ShopCache:
    """Public key -> shop, kept briefly per process; domain or settings edits reach the endpoints within the TTL."""

    def __init__(self):
        self._entries: dict[str, tuple[float, StorefrontShop | None]] = {}
        self._lock = threading.Lock()

    def get(self, sessions, public_key: str) -> StorefrontShop | None:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(public_key)
        if hit is not None and hit[0] > now:
            return hit[1]
        with sessions() as session:
            shop = session.scalars(select(Shop).where(Shop.public_key == public_key)).first()
            found = None
            if shop is not None and shop.status in ACCEPTING_STATUSES:
                found = StorefrontShop(shop.id, shop.public_key, shop.platform, shop.domain, shop.locale or "en",
                                       shop_hosts(shop), dict(shop.settings or {}))
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[public_key] = (now + SHOP_CACHE_SECONDS, found)
        return found

    def forget(self) -> None:
        with self._lock:
            self._entries.clear()


class Gate:
    """One web process's shop lookups and rate-limit counts, shared by the Flask views and the lean `/s/events`."""

    def __init__(self, companion):
        self.runtime = companion
        self.shops = _ShopCache()
        self.counts = ratelimit.BatchedCounts()


def runtime():
    return current_app.extensions["companion"]


def gate() -> Gate:
    return current_app.extensions["storefront_gate"]


def find_shop(gate_: Gate, public_key: str | None) -> StorefrontShop:
    if not public_key:
        raise Rejected(400, "missing_key", "the shop's public key is required as the `k` query parameter")
    if len(public_key) > 64:
        raise Rejected(404, "unknown_key", "no shop has this public key")
    shop = gate_.shops.get(gate_.runtime.sessions, public_key)
    if shop is None:
        raise Rejected(404, "unknown_key", "no shop has this public key")
    return shop


def shop_for_key(public_key: str | None) -> StorefrontShop:
    return find_shop(gate(), public_key)


def allowed_origin(shop: StorefrontShop, origin: str | None) -> str | None:
    """The Origin header itself when it is one of the shop's own sites (http or https), else None."""
    if not origin:
        return None
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return origin if parts.netloc.lower() in shop.hosts else None


def require_origin(shop: StorefrontShop) -> str:
    return check_origin(shop, request.headers.get("Origin"))


def check_origin(shop: StorefrontShop, origin: str | None) -> str:
    if allowed_origin(shop, origin) is None:
        shown = (origin or "")[:100] or "none"
        raise Rejected(403, "origin_not_allowed", f"Origin {shown} is not one of this shop's domains")
    return origin


def cors_headers(origin: str, preflight: bool = False) -> dict[str, str]:
    headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    if preflight:
        headers.update({
            "Access-Control-Allow-Methods": "GET, POST, DELETE",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "600",
        })
    return headers


def read_json_body() -> dict:
    """The request body as a JSON object, whatever its Content-Type (sendBeacon sends text/plain), within the size cap."""
    cap = runtime().settings.storefront.max_body_bytes
    length = request.content_length
    if length is not None and length > cap:
        raise body_too_large(cap, length)
    raw = request.stream.read(cap + 1)
    if len(raw) > cap:
        raise body_too_large(cap)
    return json_object(raw)


def body_too_large(cap: int, declared: int | None = None) -> Rejected:
    if declared is not None:
        return Rejected(413, "payload_too_large", f"the body is {declared} bytes; the limit is {cap}")
    return Rejected(413, "payload_too_large", f"the body is over the limit of {cap} bytes")


def json_object(raw: bytes) -> dict:
    """A request body parsed as a JSON object, or a 400 naming what is wrong."""
    if not raw:
        raise Rejected(400, "empty_body", "the body must be a JSON object")
    try:
        body = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Rejected(400, "invalid_json", f"the body is not valid UTF-8 JSON: {str(exc)[:120]}") from None
    if not isinstance(body, dict):
        raise Rejected(400, "invalid_json", "the body must be a JSON object")
    return body


def client_ip() -> str:
    return address_key(request.remote_addr)


def address_key(remote_addr: str | None) -> str:
    """The client address as the per-IP limit counts it (after ProxyFix, the shopper's own)."""
    return (remote_addr or "unknown")[:45]


def user_agent() -> str | None:
    value = request.headers.get("User-Agent")
    return value[:512] if value else None


_redis_clients: dict[str, object] = {}


def _redis(url: str | None):
    if not url:
        return None
    client = _redis_clients.get(url)
    if client is None:
        import redis

        client = _redis_clients[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    return client


def _limits(settings, shop: StorefrontShop, visitor_id: str | None, ip: str) -> dict[str, int]:
    keys = {f"ip:{ip}": settings.ip_requests_per_minute}
    if visitor_id:
        keys[f"v:{shop.id}:{visitor_id}"] = settings.visitor_requests_per_minute
    return keys


def _refusal(counts: ratelimit.BatchedCounts, limits: dict[str, int]) -> Rejected | None:
    for key, limit in limits.items():
        if counts.estimate(key) > limit:
            who = "this visitor" if key.startswith("v:") else "this IP address"
            retry = ratelimit.WINDOW_SECONDS - int(time.time()) % ratelimit.WINDOW_SECONDS
            return Rejected(429, "rate_limited", f"too many requests from {who}: the limit is {limit} a minute",
                            headers={"Retry-After": str(retry)})
    return None


def _sync_to_redis(counts: ratelimit.BatchedCounts, client, window: int, batch: dict[str, int]) -> None:
    try:
        totals = ratelimit.add_hits(None, batch, window, client)
    except Exception as exc:  # noqa: BLE001 - Redis errors of any kind
        # Redis down: the storefront keeps working on this process's own counts rather than refusing every shopper.
        log.warning("storefront rate limits not shared: Redis failed", extra={"error": type(exc).__name__})
        return
    counts.synced(window, totals)


def counted_then(gate_: Gate, shop: StorefrontShop, visitor_id: str | None, ip: str,
                 work: Callable[[Any], T] | None = None) -> T | None:
    """Count the request per IP and per visitor and, unless it is over a limit, run `work(driver_connection)` in one
    transaction (a write straight on the driver: app/db.py `driver_transaction`).

    Counts are kept per process and added to the shared counters (Redis, else the database) in batches
    (app/storefront/ratelimit.py), so most requests decide without a round trip. When a batch is due on
    the database it is written in the request's own transaction: one commit, and refused requests count too.
    """
    companion = gate_.runtime
    counts = gate_.counts
    limits = _limits(companion.settings.storefront, shop, visitor_id, ip)
    window, batch = counts.count(limits)
    if batch is not None and companion.settings.redis_url:
        _sync_to_redis(counts, _redis(companion.settings.redis_url), window, batch)
        batch = None
    engine = companion.engine
    if batch is None:
        refusal = _refusal(counts, limits)
        if refusal is not None:
            raise refusal
        if work is None:
            return None
        with driver_transaction(engine) as driver:
            return work(driver)
    totals = None
    try:
        with engine.begin() as conn:
            if work is None and engine.dialect.name == "postgresql":
                # A counter lost in a crash costs nothing; not waiting for the WAL flush keeps the counter rows
                # locked for microseconds, not for a disk write.
                conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
            totals = ratelimit.add_hits(conn, batch, window)
            counts.synced(window, totals)
            refusal = _refusal(counts, limits)
            result = None if refusal is not None or work is None else work(conn.connection.driver_connection)
    except Exception:
        if totals is None:  # else the rolled-back totals already hold the batch; either way the next sync corrects it
            counts.unsynced(window, batch)
        raise
    if refusal is not None:
        raise refusal
    return result


def enforce_rate_limits(shop: StorefrontShop, visitor_id: str | None) -> None:
    """Count the Flask request being served and refuse it with 429 when over a limit."""
    counted_then(gate(), shop, visitor_id, client_ip())
