"""The wc/v3 REST client for one shop: authenticated, retried where safe, paginated concurrently but streamed in order."""
from __future__ import annotations

import datetime as dt
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from queue import Queue
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

import requests

from connectors.errors import (
    AmbiguousOutcome, AuthError, ConnectorError, InvalidPayload, NotFound, RateLimited, TemporaryError,
)
from connectors.http import DEFAULT_TIMEOUT, SafeSession, UrlPolicy
from connectors.records import Money, StoreCart, StoreCustomer, StoreOrder, StoreProduct, StoreRefund
from connectors.woocommerce import mapping
from connectors.woocommerce.auth import Credentials, RequestAuth, authorise, choose_mode, query_string
from connectors.woocommerce.retry import RetryPolicy, never_sent, retry_after_seconds
from connectors.woocommerce.webhooks import Webhook

MAX_PAGE_SIZE = 100  # WooCommerce answers 400 rest_invalid_param above this
TRACKING_NAMESPACE = "wc-shipment-tracking/v3"  # official Shipment Tracking, and AST's drop-in copy of it

ORDER_FIELDS: tuple[str, ...] = (
    "id", "parent_id", "number", "order_key", "created_via", "status", "currency", "date_created_gmt",
    "date_modified_gmt", "discount_total", "shipping_total", "total", "total_tax", "customer_id", "billing",
    "shipping", "payment_method", "payment_method_title", "date_paid_gmt", "date_completed_gmt", "line_items",
    "shipping_lines", "coupon_lines", "refunds",
)
CUSTOMER_FIELDS: tuple[str, ...] = ("id", "date_created_gmt", "date_modified_gmt", "email", "first_name",
                                    "last_name", "billing", "shipping")
PRODUCT_FIELDS: tuple[str, ...] = ("id", "name", "sku", "price", "status", "purchasable", "stock_status",
                                   "stock_quantity", "permalink", "images", "date_created_gmt", "date_modified_gmt")
REFUND_FIELDS: tuple[str, ...] = ("id", "parent_id", "date_created_gmt", "amount", "reason")


class ApiError(ConnectorError):
    """WooCommerce refused the request: `{code, message, data: {status}}` kept as attributes."""

    def __init__(self, status: int, code: str | None, message: str, data: Any = None):
        super().__init__(f"HTTP {status} {code or '-'}: {message}")
        self.status, self.code, self.api_message, self.data = status, code, message, data


class UnsupportedTopic(ApiError):
    """The shop does not know this webhook topic (e.g. wcap_cart.* without Abandoned Cart Lite)."""


class CouponCodeTaken(ConnectorError):
    """The code exists in the shop but is a different coupon than the one we asked for."""


@dataclass(frozen=True)
class ApiResponse:
    status: int
    data: Any
    headers: Mapping[str, str]


@dataclass(frozen=True)
class PageProgress:
    """Reported after each page of a listing, so sync progress can be shown."""

    path: str
    page: int
    total_pages: int | None
    total_items: int | None
    items_on_page: int


@dataclass(frozen=True)
class Capabilities:
    """What the shop can do, read from the unauthenticated `/wp-json/` index (independent of HPOS)."""

    namespaces: tuple[str, ...]
    home_url: str | None
    name: str | None
    timezone: str | None
    gmt_offset: float | None

    @property
    def rest_api(self) -> bool:
        return "wc/v3" in self.namespaces

    @property
    def shipment_tracking(self) -> bool:
        """`wc-shipment-tracking/v3` answers: the official extension or AST (which registers the same routes)."""
        return TRACKING_NAMESPACE in self.namespaces

    @property
    def advanced_shipment_tracking(self) -> bool:
        return "wc-ast/v3" in self.namespaces

    @property
    def store_api(self) -> bool:
        return any(ns == "wc/store/v1" or ns == "wc/store" for ns in self.namespaces)

    @property
    def abandoned_cart_namespaces(self) -> tuple[str, ...]:
        """Namespaces that look like an abandoned-cart plugin's. Abandoned Cart Lite registers none: it shows up
        only as webhook topics, which `create_webhook` refuses with UnsupportedTopic when it is absent."""
        return tuple(ns for ns in self.namespaces
                     if any(word in ns for word in ("abandon", "wcal", "wcap", "cartflows-ca", "cart-recovery")))


@dataclass(frozen=True)
class Coupon:
    id: int
    code: str
    discount_type: str
    amount: Decimal
    usage_limit: int | None
    usage_count: int
    email_restrictions: tuple[str, ...]
    expires_at: dt.datetime | None
    created: bool  # False when the code already existed (our earlier attempt) and was fetched instead

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], created: bool) -> "Coupon":
        limit = payload.get("usage_limit")
        return cls(id=int(payload["id"]), code=str(payload.get("code") or ""),
                   discount_type=str(payload.get("discount_type") or ""),
                   amount=Decimal(str(payload.get("amount") or "0")),
                   usage_limit=int(limit) if limit not in (None, "") else None,
                   usage_count=int(payload.get("usage_count") or 0),
                   email_restrictions=tuple(str(e).lower() for e in payload.get("email_restrictions") or []),
                   expires_at=mapping.parse_gmt(payload.get("date_expires_gmt")), created=created)


@dataclass(frozen=True)
class TrackingItem:
    tracking_id: str
    provider: str
    number: str
    link: str | None
    date_shipped: str | None


@dataclass(frozen=True)
class OrderNote:
    id: int
    note: str
    customer_note: bool
    created_at: dt.datetime | None


@dataclass(frozen=True)
class TrackingWrite:
    """How a tracking number reached the shop: the tracking plugin, or an order note when there is none."""

    via: str  # shipment_tracking | order_note
    created: bool  # False when it was already there (nothing was posted)
    tracking: TrackingItem | None = None
    note: OrderNote | None = None


def _error_fields(response: requests.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        return None, (response.text or "")[:200]
    if isinstance(body, dict):
        return body.get("code"), str(body.get("message") or "")[:500]
    return None, str(body)[:200]


def _normalise_store_url(store_url: str) -> str:
    parts = urlsplit(store_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{store_url!r} is not an http(s) store URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{store_url!r}: a store URL has no query or fragment")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


class WooCommerceClient:
    """One shop, one key pair. Not shared between shops: nothing here is global.

    `store_url` is the shop's home URL exactly as WordPress knows it (scheme and `www` included): OAuth
    signatures cover it. `auth` is `auto` (Basic on https, OAuth 1.0a on http), `basic`, `query` (keys in the
    query string, for servers that strip Authorization; https only) or `oauth`. `policy` checks every URL against
    SSRF rules (pass `UrlPolicy(allow_private=True)` only in tests). Listings fetch up to `concurrency` pages at
    once (2-4 is polite for a PHP shop) and yield them in order, one page in memory per worker.
    """

    def __init__(self, store_url: str, credentials: Credentials, *, policy: UrlPolicy | None = None,
                 auth: str = "auto", timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                 retry: RetryPolicy = RetryPolicy(), concurrency: int = 3, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 user_agent: str = "store-companion (WooCommerce connector)"):
        if not 1 <= concurrency <= 8:
            raise ValueError("concurrency must be between 1 and 8")
        self.store_url = _normalise_store_url(store_url)
        self.auth_mode = choose_mode(self.store_url, auth)
        self._policy = policy if policy is not None else UrlPolicy()
        if self.auth_mode in ("basic", "query") and urlsplit(self.store_url).scheme != "https" \
                and not self._policy.allow_private:
            raise ValueError("Basic and query-string keys travel in the clear over http; use auth='oauth'")
        self._credentials = credentials
        self._timeout = timeout
        self._retry = retry
        self.concurrency = concurrency
        self._shared_session = session
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self._sleep = sleep
        self._clock = clock
        self._user_agent = user_agent

    def __repr__(self) -> str:  # the secret stays out of logs
        return f"WooCommerceClient({self.store_url!r}, auth={self.auth_mode!r})"

    # --- transport --------------------------------------------------------------------------------

    def _new_session(self) -> requests.Session:
        return SafeSession(self._policy, self._timeout, self._user_agent)

    def _session(self) -> requests.Session:
        if self._shared_session is not None:
            return self._shared_session
        session = getattr(self._local, "session", None)
        if session is None:  # one session per calling thread: a requests.Session is not meant to be shared
            session = self._new_session()
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close the connections this client opened."""
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    def __enter__(self) -> "WooCommerceClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def url_for(self, path: str, namespace: str | None = "wc/v3") -> str:
        if namespace is None:
            return f"{self.store_url}/wp-json/"
        return f"{self.store_url}/wp-json/{namespace}/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
                namespace: str | None = "wc/v3", idempotent: bool | None = None,
                authenticated: bool = True) -> ApiResponse:
        """One call, retried on 429 always and on 5xx/network errors when `idempotent` (GET/PUT/DELETE default).

        Raises AuthError (401/403), NotFound (404), RateLimited, TemporaryError (retries exhausted),
        AmbiguousOutcome (a create that may have happened), ApiError (other refusals), UnsafeURL.
        """
        return self._request(method, path, self._session(), params=params, json=json, namespace=namespace,
                             idempotent=idempotent, authenticated=authenticated)

    def _request(self, method: str, path: str, session: requests.Session, *, params: Mapping[str, Any] | None,
                 json: Any = None, namespace: str | None = "wc/v3", idempotent: bool | None = None,
                 authenticated: bool = True) -> ApiResponse:
        method = method.upper()
        if idempotent is None:
            idempotent = method in ("GET", "HEAD", "PUT", "DELETE", "OPTIONS")
        url = self.url_for(path, namespace)
        plain = {key: value for key, value in (params or {}).items() if value is not None}
        where = f"{method} {path or '/wp-json/'} on {self.store_url}"
        failure: ConnectorError = TemporaryError(f"{where} was not attempted")
        for attempt in range(self._retry.max_attempts):
            # Signed afresh on every attempt: WooCommerce refuses a nonce it has seen.
            carried = authorise(self.auth_mode, self._credentials, method, url, plain, clock=self._clock) \
                if authenticated else RequestAuth({k: str(v) for k, v in plain.items()}, {})
            full = f"{url}?{query_string(carried.params)}" if carried.params else url
            headers = {"Accept": "application/json", **carried.headers}
            try:
                response = session.request(method, full, json=json, headers=headers, timeout=self._timeout)
            except requests.RequestException as exc:
                if not idempotent and not never_sent(exc):
                    raise AmbiguousOutcome(f"{where}: {type(exc).__name__} after sending; it may have been applied") \
                        from None
                failure, wait = TemporaryError(f"{where}: {type(exc).__name__}"), self._retry.delay(attempt)
            else:
                outcome = self._interpret(response, where, idempotent, attempt)
                if isinstance(outcome, ApiResponse):
                    return outcome
                failure, wait = outcome
            if attempt + 1 < self._retry.max_attempts:
                self._sleep(wait)
        raise failure

    def _interpret(self, response: requests.Response, where: str, idempotent: bool,
                   attempt: int) -> ApiResponse | tuple[ConnectorError, float]:
        status = response.status_code
        if 200 <= status < 300:
            if not response.content:
                return ApiResponse(status, None, response.headers)
            try:
                return ApiResponse(status, response.json(), response.headers)
            except ValueError:
                # Security plugins and maintenance pages answer 200 with HTML.
                raise InvalidPayload(f"{where}: HTTP {status} but the answer is not JSON") from None
        if 300 <= status < 400:
            raise ConnectorError(f"{where}: redirected to {response.headers.get('Location')!r}; redirects are not "
                                 "followed, use the address the shop redirects to as its store URL")
        code, message = _error_fields(response)
        if status == 429:
            wait = retry_after_seconds(response)
            wait = wait if wait is not None else self._retry.delay(attempt)
            error = RateLimited(f"{where}: HTTP 429 {message}".strip(), wait)
            if wait > self._retry.max_retry_after:
                raise error
            return error, wait
        if status >= 500 and status != 501:
            if not idempotent:
                raise AmbiguousOutcome(f"{where}: HTTP {status}; the change may have been applied")
            return TemporaryError(f"{where}: HTTP {status} {code or ''}".strip()), self._retry.delay(attempt)
        if status in (401, 403):
            error = AuthError(f"{where}: HTTP {status} {code or '-'}: {message}{self._auth_hint(code, message)}")
            error.status, error.code = status, code  # type: ignore[attr-defined]
            raise error
        if status == 404:
            error = NotFound(f"{where}: HTTP 404 {code or '-'}: {message}")
            error.status, error.code = status, code  # type: ignore[attr-defined]
            raise error
        raise ApiError(status, code, message, _error_data(response))

    def _auth_hint(self, code: str | None, message: str) -> str:
        if self.auth_mode == "basic" and (code == "woocommerce_rest_cannot_view" or "missing" in message.lower()):
            return (" (the shop ignored the Basic credentials: WordPress does not see HTTPS behind its proxy, or the "
                    "server strips the Authorization header; auth='query' works around the latter)")
        if "timestamp" in message.lower():
            return " (OAuth timestamps must be within 15 minutes of the shop's clock)"
        if "signature" in message.lower():
            return (" (the OAuth signature covers the store URL exactly: check http/https and www against the "
                    "shop's home URL from discover())")
        return ""

    # --- discovery ----------------------------------------------------------------------------------

    def discover(self) -> Capabilities:
        """Read `/wp-json/` without credentials (WooCommerce 11.1+ refuses its keys outside wc namespaces)."""
        response = self.request("GET", "", namespace=None, authenticated=False,
                                params={"_fields": "name,home,url,namespaces,timezone_string,gmt_offset"})
        index = response.data if isinstance(response.data, dict) else None
        if index is None or not isinstance(index.get("namespaces"), list):
            raise InvalidPayload(f"{self.store_url}/wp-json/ is not a WordPress REST index")
        offset = index.get("gmt_offset")
        try:
            gmt_offset = float(offset) if offset not in (None, "") else None
        except (TypeError, ValueError):
            gmt_offset = None
        return Capabilities(namespaces=tuple(str(ns) for ns in index["namespaces"]),
                            home_url=index.get("home") or index.get("url"), name=index.get("name"),
                            timezone=index.get("timezone_string") or None, gmt_offset=gmt_offset)

    def check_credentials(self) -> None:
        """One cheap authenticated read; raises AuthError (with a hint) when the key does not work."""
        self.request("GET", "orders", params={"per_page": 1, "_fields": "id"})

    # --- listings -----------------------------------------------------------------------------------

    def iter_raw(self, path: str, params: Mapping[str, Any] | None = None, *, namespace: str = "wc/v3",
                 on_page: Callable[[PageProgress], None] | None = None, adaptive: bool = True) -> Iterator[dict]:
        """Every item of a paginated collection, in server order, as dicts.

        The first page tells the page count (X-WP-TotalPages); the next pages are fetched `concurrency` at a
        time and yielded in order. When a page keeps failing (a PHP time limit on 100 full orders), `adaptive`
        halves the page size (100 → 50 → 25) and carries on after the last page that arrived. Offset pagination
        drifts when items change meanwhile: sync with an overlapping `modified_after` cursor so the next run
        picks up what moved.
        """
        params = dict(params or {})
        per_page = int(params.pop("per_page", MAX_PAGE_SIZE))
        if not 1 <= per_page <= MAX_PAGE_SIZE:
            raise ValueError(f"per_page must be between 1 and {MAX_PAGE_SIZE}")
        done = 0  # items yielded so far: always whole pages, so a smaller page size divides it
        while True:
            try:
                for items in self._pages(path, {**params, "per_page": per_page}, done // per_page + 1, namespace,
                                         on_page):
                    yield from items
                    done += len(items)
                return
            except TemporaryError:
                smaller = per_page // 2
                if not adaptive or per_page % 2 or smaller < 10:
                    raise
                per_page = smaller

    def _pages(self, path: str, params: dict[str, Any], start: int, namespace: str,
               on_page: Callable[[PageProgress], None] | None) -> Iterator[list[dict]]:
        """Pages `start`.. of a listing, in order, `concurrency` in flight after the first."""
        first = self.request("GET", path, params={**params, "page": start}, namespace=namespace)
        total_pages = _int_header(first.headers, "X-WP-TotalPages")
        total_items = _int_header(first.headers, "X-WP-Total")
        yield self._page_items(first, path, start, total_pages, total_items, on_page)
        if total_pages is None:  # a cache or proxy ate the headers: walk until a short page
            page, items = start, first.data or []
            while len(items) >= int(params["per_page"]):
                page += 1
                response = self.request("GET", path, params={**params, "page": page}, namespace=namespace)
                items = response.data or []
                yield self._page_items(response, path, page, None, total_items, on_page)
            return
        if total_pages <= start:
            return
        # Each worker borrows one of `concurrency` sessions made for this listing and closed after it.
        sessions: Queue[requests.Session] = Queue()
        made = [self._shared_session or self._new_session() for _ in range(self.concurrency)]
        for session in made:
            sessions.put(session)

        def fetch(page: int) -> ApiResponse:
            session = sessions.get()
            try:
                return self._request("GET", path, session, params={**params, "page": page}, namespace=namespace)
            finally:
                sessions.put(session)

        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="wc-page")
        pending: deque[tuple[int, Future]] = deque()
        next_page = start + 1
        try:
            while next_page <= total_pages and len(pending) < self.concurrency:
                pending.append((next_page, pool.submit(fetch, next_page)))
                next_page += 1
            while pending:
                page, future = pending.popleft()
                response = future.result()
                if next_page <= total_pages:
                    pending.append((next_page, pool.submit(fetch, next_page)))
                    next_page += 1
                yield self._page_items(response, path, page, total_pages, total_items, on_page)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if self._shared_session is None:
                for session in made:
                    session.close()

    @staticmethod
    def _page_items(response: ApiResponse, path: str, page: int, total_pages: int | None, total_items: int | None,
                    on_page: Callable[[PageProgress], None] | None) -> list[dict]:
        items = response.data
        if not isinstance(items, list):
            raise InvalidPayload(f"{path} page {page} is not a JSON list")
        if on_page is not None:
            on_page(PageProgress(path, page, total_pages, total_items, len(items)))
        return items

    def _modified_since_params(self, since: dt.datetime | None, fields: Sequence[str] | None,
                               page_size: int) -> dict[str, Any]:
        params: dict[str, Any] = {"orderby": "modified", "order": "asc", "per_page": page_size,
                                  "dates_are_gmt": "true"}
        if since is not None:
            params["modified_after"] = mapping.format_gmt(since)
        if fields:
            params["_fields"] = ",".join(fields)
        return params

    def raw_orders_modified_since(self, since: dt.datetime | None, *, statuses: Sequence[str] | None = None,
                                  fields: Sequence[str] | None = ORDER_FIELDS, page_size: int = MAX_PAGE_SIZE,
                                  on_page: Callable[[PageProgress], None] | None = None) -> Iterator[dict]:
        params = self._modified_since_params(since, fields, page_size)
        if statuses:
            params["status"] = ",".join(statuses)
        return self.iter_raw("orders", params, on_page=on_page)

    def orders_modified_since(self, since: dt.datetime | None, *, statuses: Sequence[str] | None = None,
                              fields: Sequence[str] | None = ORDER_FIELDS, page_size: int = MAX_PAGE_SIZE,
                              on_page: Callable[[PageProgress], None] | None = None) -> Iterator[StoreOrder]:
        """Orders modified after `since` (all when None), oldest change first; advance your cursor to the
        largest `updated_at` seen and start the next run a few minutes before it."""
        for payload in self.raw_orders_modified_since(since, statuses=statuses, fields=fields, page_size=page_size,
                                                      on_page=on_page):
            yield mapping.order_from_payload(payload)

    def checkout_draft_orders(self, since: dt.datetime | None, *, page_size: int = MAX_PAGE_SIZE,
                              on_page: Callable[[PageProgress], None] | None = None) -> Iterator[StoreCart]:
        """Block-checkout drafts (status checkout-draft) changed after `since`, as carts with a recovery link."""
        for payload in self.raw_orders_modified_since(since, statuses=("checkout-draft",), page_size=page_size,
                                                      on_page=on_page):
            yield mapping.cart_from_draft_order(payload, self.store_url)

    def customers(self, since: dt.datetime | None = None, *, page_size: int = MAX_PAGE_SIZE, role: str | None = None,
                  on_page: Callable[[PageProgress], None] | None = None) -> Iterator[StoreCustomer]:
        """Customers (registered accounts with WooCommerce's default role `customer`, or `role`), those modified
        after `since` when given.

        `/customers` has no modified_after filter (it is a WP_User_Query), so all pages are read and filtered
        here; guests exist only on their orders.
        """
        params = {"orderby": "id", "order": "asc", "per_page": page_size, "role": role,
                  "_fields": ",".join(CUSTOMER_FIELDS)}
        for payload in self.iter_raw("customers", params, on_page=on_page):
            customer = mapping.customer_from_payload(payload)
            if since is None or customer.updated_at is None or customer.updated_at > since:
                yield customer

    def products_modified_since(self, since: dt.datetime | None, currency: str, *, page_size: int = MAX_PAGE_SIZE,
                                on_page: Callable[[PageProgress], None] | None = None) -> Iterator[StoreProduct]:
        params = self._modified_since_params(since, PRODUCT_FIELDS, page_size)
        for payload in self.iter_raw("products", params, on_page=on_page):
            yield mapping.product_from_payload(payload, currency)

    def products_by_id(self, product_ids: Iterable[str | int], currency: str) -> list[StoreProduct]:
        """Fresh stock and price for these products (re-check right before promoting them)."""
        ids = sorted({str(product_id) for product_id in product_ids})
        found: list[StoreProduct] = []
        for start in range(0, len(ids), MAX_PAGE_SIZE):
            chunk = ids[start:start + MAX_PAGE_SIZE]
            params = {"include": ",".join(chunk), "per_page": len(chunk), "_fields": ",".join(PRODUCT_FIELDS)}
            found += [mapping.product_from_payload(p, currency) for p in self.iter_raw("products", params)]
        return found

    def refunds_since(self, since: dt.datetime | None, currency: str, *, page_size: int = MAX_PAGE_SIZE,
                      on_page: Callable[[PageProgress], None] | None = None) -> Iterator[StoreRefund]:
        """Refunds across all orders (`/refunds`, WooCommerce 9.0+; NotFound on older shops)."""
        params = self._modified_since_params(since, REFUND_FIELDS, page_size)
        for payload in self.iter_raw("refunds", params, on_page=on_page):
            yield mapping.refund_from_payload(payload, currency)

    def order_refunds(self, order_id: str | int, currency: str) -> list[StoreRefund]:
        return [mapping.refund_from_payload(payload, currency, order_id=order_id)
                for payload in self.iter_raw(f"orders/{int(order_id)}/refunds")]

    def get_order_raw(self, order_id: str | int) -> dict:
        data = self.request("GET", f"orders/{int(order_id)}").data
        if not isinstance(data, dict):
            raise InvalidPayload(f"order {order_id} is not a JSON object")
        return data

    def get_order(self, order_id: str | int) -> StoreOrder:
        return mapping.order_from_payload(self.get_order_raw(order_id))

    # --- webhooks -----------------------------------------------------------------------------------

    def webhooks(self, status: str = "all") -> list[Webhook]:
        """Webhooks by status: all | active | paused | disabled (disabled = WooCommerce gave up after failures)."""
        return [Webhook.from_payload(p) for p in self.iter_raw("webhooks", {"status": status})]

    def create_webhook(self, topic: str, delivery_url: str, secret: str, *, name: str | None = None) -> Webhook:
        """Subscribe `topic` with our own secret (WooCommerce never returns a secret it generated itself)."""
        if not secret or not secret.isalnum():
            raise ValueError("use an ASCII letters-and-digits secret: WooCommerce's admin sanitises others")
        body = {"name": name or f"store-companion {topic}", "topic": topic, "delivery_url": delivery_url,
                "secret": secret, "status": "active"}
        try:
            response = self.request("POST", "webhooks", json=body)
        except ApiError as exc:
            if exc.code == "rest_invalid_param" and "topic" in f"{exc.api_message} {exc.data}":
                raise UnsupportedTopic(exc.status, exc.code, exc.api_message, exc.data) from None
            raise
        except AmbiguousOutcome:
            existing = [hook for hook in self.webhooks() if hook.topic == topic and hook.delivery_url == delivery_url]
            if existing:
                return existing[0]
            raise
        return Webhook.from_payload(response.data)

    def update_webhook(self, webhook_id: int, **changes: Any) -> Webhook:
        """PUT any of name, status, topic, delivery_url, secret."""
        allowed = {"name", "status", "topic", "delivery_url", "secret"}
        if not changes or set(changes) - allowed:
            raise ValueError(f"change one or more of {', '.join(sorted(allowed))}")
        return Webhook.from_payload(self.request("PUT", f"webhooks/{int(webhook_id)}", json=changes).data)

    def enable_webhook(self, webhook_id: int) -> Webhook:
        return self.update_webhook(webhook_id, status="active")

    def delete_webhook(self, webhook_id: int) -> None:
        """Delete for good (`force=true`; without it WooCommerce answers 501). Already gone counts as done."""
        try:
            self.request("DELETE", f"webhooks/{int(webhook_id)}", params={"force": "true"})
        except NotFound:
            pass

    # --- write-back ---------------------------------------------------------------------------------

    def set_order_status(self, order_id: str | int, status: str) -> StoreOrder:
        """PUT the status (e.g. completed on shipping); WooCommerce then sends its own status e-mails."""
        if not status or status.startswith("wc-"):
            raise ValueError("give the REST status without the wc- prefix, e.g. completed")
        response = self.request("PUT", f"orders/{int(order_id)}", json={"status": status})
        return mapping.order_from_payload(response.data)

    def order_notes(self, order_id: str | int, note_type: str = "any") -> list[OrderNote]:
        data = self.request("GET", f"orders/{int(order_id)}/notes", params={"type": note_type}).data or []
        return [OrderNote(id=int(n["id"]), note=str(n.get("note") or ""), customer_note=bool(n.get("customer_note")),
                          created_at=mapping.parse_gmt(n.get("date_created_gmt"))) for n in data]

    def add_order_note(self, order_id: str | int, note: str, *, customer_note: bool = False) -> OrderNote:
        """Add a note once: an identical note already on the order is returned instead of posting again.

        `customer_note=True` makes WooCommerce e-mail it to the customer; only when the shop owner asked for it.
        """
        def existing() -> OrderNote | None:
            return next((n for n in self.order_notes(order_id)
                         if n.note.strip() == note.strip() and n.customer_note == customer_note), None)

        found = existing()
        if found is not None:
            return found
        try:
            data = self.request("POST", f"orders/{int(order_id)}/notes",
                                json={"note": note, "customer_note": customer_note}).data
        except AmbiguousOutcome:
            found = existing()
            if found is not None:
                return found
            raise
        return OrderNote(id=int(data["id"]), note=str(data.get("note") or note),
                         customer_note=bool(data.get("customer_note")),
                         created_at=mapping.parse_gmt(data.get("date_created_gmt")))

    def tracking_items(self, order_id: str | int) -> list[TrackingItem]:
        data = self.request("GET", f"orders/{int(order_id)}/shipment-trackings", namespace=TRACKING_NAMESPACE).data
        return [TrackingItem(tracking_id=str(item.get("tracking_id") or ""),
                             provider=str(item.get("tracking_provider") or item.get("custom_tracking_provider") or ""),
                             number=str(item.get("tracking_number") or ""), link=item.get("tracking_link") or None,
                             date_shipped=item.get("date_shipped") or None) for item in data or []]

    def add_tracking(self, order_id: str | int, provider: str, number: str, url: str | None = None, *,
                     replace: bool = True, date_shipped: dt.date | None = None) -> tuple[TrackingItem, bool]:
        """Put a tracking number on the order through `wc-shipment-tracking/v3`; returns (item, created).

        AST makes a new item for every POST, so the order's items are read first and a number already there is
        not posted again; `replace` sends `replace_tracking=1` so a relabelled parcel replaces the old number.
        A custom carrier (`url` given) goes as custom_tracking_provider + custom_tracking_link.
        """
        number = number.strip()
        if not number or not provider.strip():
            raise ValueError("provider and number are required")

        def existing() -> TrackingItem | None:
            return next((item for item in self.tracking_items(order_id) if item.number == number), None)

        found = existing()
        if found is not None:
            return found, False
        body: dict[str, Any] = {"tracking_number": number, "replace_tracking": 1 if replace else 0,
                                "date_shipped": (date_shipped or dt.datetime.now(dt.timezone.utc).date()).isoformat()}
        if url:
            body.update({"custom_tracking_provider": provider, "custom_tracking_link": url})
        else:
            body["tracking_provider"] = provider
        try:
            data = self.request("POST", f"orders/{int(order_id)}/shipment-trackings", json=body,
                                namespace=TRACKING_NAMESPACE).data or {}
        except AmbiguousOutcome:
            found = existing()
            if found is not None:
                return found, False
            raise
        return TrackingItem(tracking_id=str(data.get("tracking_id") or ""),
                            provider=str(data.get("tracking_provider") or data.get("custom_tracking_provider") or provider),
                            number=str(data.get("tracking_number") or number),
                            link=data.get("tracking_link") or url, date_shipped=data.get("date_shipped")), True

    def write_tracking(self, order_id: str | int, provider: str, number: str, url: str | None = None, *,
                       capabilities: Capabilities, note_template: str = "Shipped with {provider}: {number} {url}",
                       customer_note: bool = False) -> TrackingWrite:
        """Tracking plugin when the shop has one, otherwise an order note (never both, never twice).

        `customer_note` applies to the fallback note only (True: WooCommerce e-mails it to the customer); with a
        tracking plugin the number reaches the customer through the plugin's own e-mails and pages.
        """
        if capabilities.shipment_tracking:
            try:
                item, created = self.add_tracking(order_id, provider, number, url)
                return TrackingWrite(via="shipment_tracking", created=created, tracking=item)
            except NotFound as exc:
                if getattr(exc, "code", None) not in ("rest_no_route",):
                    raise  # the order itself is missing
        text = note_template.format(provider=provider, number=number, url=url or "").strip()
        before = {n.id for n in self.order_notes(order_id)}
        note = self.add_order_note(order_id, text, customer_note=customer_note)
        return TrackingWrite(via="order_note", created=note.id not in before, note=note)

    def find_coupon(self, code: str) -> Coupon | None:
        code = code.strip().lower()
        for payload in self.iter_raw("coupons", {"code": code}):
            if str(payload.get("code") or "").lower() == code:
                return Coupon.from_payload(payload, created=False)
        return None

    def create_coupon(self, code: str, *, percent: Decimal | int | str | None = None, amount: Money | None = None,
                      email_restrictions: Sequence[str] = (), expires_at: dt.datetime | None = None,
                      usage_limit: int = 1, individual_use: bool = True, description: str = "",
                      meta: Mapping[str, str] | None = None) -> Coupon:
        """A single-use recovery coupon. Safe to call again with the same arguments: when the code already
        exists (our earlier attempt whose answer was lost) the existing coupon is returned with created=False;
        when it exists with other terms, CouponCodeTaken is raised.
        """
        code = code.strip().lower()  # WooCommerce lowercases codes (wc_format_coupon_code)
        if not code or any(ch.isspace() for ch in code):
            raise ValueError("a coupon code is one lowercase word")
        if (percent is None) == (amount is None):
            raise ValueError("give exactly one of percent and amount")
        if percent is not None:
            value, discount_type = Decimal(str(percent)), "percent"
            if not Decimal(0) < value <= Decimal(100):
                raise ValueError("percent must be in (0, 100]")
        else:
            value, discount_type = amount.amount, "fixed_cart"
            if value <= 0:
                raise ValueError("amount must be positive")
        emails = tuple(sorted(email.strip().lower() for email in email_restrictions if email.strip()))
        body: dict[str, Any] = {"code": code, "discount_type": discount_type, "amount": str(value),
                                "individual_use": individual_use, "usage_limit": usage_limit,
                                "usage_limit_per_user": 1, "email_restrictions": list(emails),
                                "description": description}
        if expires_at is not None:
            body["date_expires_gmt"] = mapping.format_gmt(expires_at)
        if meta:
            body["meta_data"] = [{"key": key, "value": val} for key, val in meta.items()]
        try:
            # Retrying a create is safe here: a repeat lands on "already exists", which resolves below.
            response = self.request("POST", "coupons", json=body, idempotent=True)
            return Coupon.from_payload(response.data, created=True)
        except ApiError as exc:
            if exc.code != "woocommerce_rest_coupon_code_already_exists":
                raise
        existing = self.find_coupon(code)
        if existing is None:
            raise ConnectorError(f"coupon {code!r} exists according to the shop but cannot be read back")
        if existing.discount_type != discount_type or existing.amount != value \
                or tuple(sorted(existing.email_restrictions)) != emails:
            raise CouponCodeTaken(f"coupon code {code!r} is already used by a different coupon (id {existing.id})")
        return existing


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    try:
        return int(headers.get(name)) if headers.get(name) is not None else None
    except (TypeError, ValueError):
        return None


def _error_data(response: requests.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("data") if isinstance(body, dict) else None
