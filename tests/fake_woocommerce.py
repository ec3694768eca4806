"""A fake WooCommerce shop on loopback: the wc/v3 REST shapes, its auth rules, pagination and errors; all recorded.

It is deliberately as strict as WooCommerce: OAuth 1.0a signatures are checked by an independent re-implementation
of `WC_REST_Authentication::check_oauth_signature` (PHP `$_GET` decoding, `uksort(strcmp)`, `rawurlencode` twice,
`home_url` + path), nonces may not repeat, timestamps must be within 15 minutes; Basic auth is honoured only when
the shop "is SSL"; `per_page` above 100 is refused; keys without write permission cannot write; webhooks deliver
`wp_json_encode` bodies (slashes escaped as `\\/`). AST-style shipment tracking is not idempotent, like the plugin.
"""
from __future__ import annotations

import base64
import copy
import datetime as dt
import hashlib
import hmac
import http.server
import itertools
import json
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

import pytest

from tests.loopback import LoopbackFake

CONSUMER_KEY = "ck_4b1f0c2d9e8a7f6b5c4d3e2f1a0b9c8d7e6f5a4b"
CONSUMER_SECRET = "cs_9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b"
SHOP_UTC_OFFSET = dt.timedelta(hours=1)  # Europe/Warsaw in winter: local date_* differ from *_gmt
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")


def php_rawurlencode(text: str) -> str:
    """PHP's rawurlencode, byte by byte (written from the PHP manual, not from the client's helper)."""
    return "".join(chr(byte) if byte in _UNRESERVED else f"%{byte:02X}" for byte in text.encode("utf-8"))


def php_json_encode(value: Any) -> bytes:
    """`trim(wp_json_encode($payload))`: compact, non-ASCII as \\uXXXX, and `/` escaped as `\\/`."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode("ascii")


def wc_check_oauth_signature(method: str, home_url: str, request_path: str, params: dict[str, str],
                             consumer_secret: str) -> bool:
    """WooCommerce's check, step by step, over the decoded request parameters."""
    base_request_uri = php_rawurlencode(home_url.rstrip("/") + "/" + request_path.lstrip("/"))
    consumer_signature = unquote(params["oauth_signature"].replace(" ", "+"))
    unsigned = {key: value for key, value in params.items() if key != "oauth_signature"}
    ordered = sorted(unsigned.items(), key=lambda item: item[0].encode("utf-8"))  # uksort($params, 'strcmp')
    normalized = [(php_rawurlencode(key), php_rawurlencode(value)) for key, value in ordered]
    joined = "%26".join(php_rawurlencode(f"{key}={value}") for key, value in normalized)
    string_to_sign = f"{method}&{base_request_uri}&{joined}"
    algorithm = {"HMAC-SHA1": hashlib.sha1, "HMAC-SHA256": hashlib.sha256}[unsigned["oauth_signature_method"]]
    expected = base64.b64encode(hmac.new(f"{consumer_secret}&".encode(), string_to_sign.encode(), algorithm).digest())
    return hmac.compare_digest(expected.decode(), consumer_signature)


def gmt(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


class RawJSON(bytes):
    """A response body that is already JSON text (generated pages are not built as dicts)."""


class WCError(Exception):
    def __init__(self, status: int, code: str, message: str, **data: Any):
        super().__init__(message)
        self.status, self.code, self.message, self.data = status, code, message, data

    def body(self) -> dict:
        return {"code": self.code, "message": self.message, "data": {"status": self.status, **self.data}}


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any = None


@dataclass
class Fault:
    status: int
    body: Any = None
    headers: dict = field(default_factory=dict)
    path: str | None = None  # substring of the request path this fault applies to
    method: str | None = None
    apply_first: bool = False  # do the work, then answer with the fault (a lost answer)
    query: dict = field(default_factory=dict)  # query parameters the request must carry for the fault to apply


class FakeWooCommerce(LoopbackFake):
    """One shop. Fill it with add_* helpers, point clients at `.url`, assert on `.requests`."""

    def __init__(self, *, is_ssl: bool = False, currency: str = "PLN", tracking_plugin: str | None = "ast",
                 store_api: bool = True, clock: Callable[[], float] = time.time):
        self.is_ssl = is_ssl
        self.currency = currency
        self.tracking_plugin = tracking_plugin  # None | "official" | "ast"
        self.store_api = store_api
        self.clock = clock
        self.keys: dict[str, dict] = {CONSUMER_KEY: {"secret": CONSUMER_SECRET, "permissions": "read_write"}}
        self.extra_topics: set[str] = set()  # e.g. wcap_cart.cutoff when Abandoned Cart Lite is "installed"
        self.orders: dict[int, dict] = {}
        self.customers: dict[int, dict] = {}
        self.products: dict[int, dict] = {}
        self.refunds: dict[int, dict] = {}
        self.coupons: dict[int, dict] = {}
        self.webhooks: dict[int, dict] = {}
        self.webhook_secrets: dict[int, str] = {}
        self.notes: dict[int, list[dict]] = {}
        self.trackings: dict[int, list[dict]] = {}
        self.requests: list[RecordedRequest] = []
        self.used_nonces: set[tuple[str, str]] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self.response_delay = 0.0
        self.generated: tuple[int, int, dt.datetime, bytes] | None = None
        self._faults: list[Fault] = []
        self._ids = itertools.count(1000)
        self._lock = threading.RLock()

    # --- test controls ------------------------------------------------------------------------------

    def fail_next(self, status: int, *, body: Any = None, headers: dict | None = None, times: int = 1,
                  path: str | None = None, method: str | None = None, apply_first: bool = False,
                  query: dict | None = None) -> None:
        """Answer the next `times` matching requests with `status` (after doing the work when apply_first)."""
        self._faults += [Fault(status, body, headers or {}, path, method, apply_first, query or {})
                         for _ in range(times)]

    def add_key(self, consumer_key: str, consumer_secret: str, permissions: str = "read_write") -> None:
        self.keys[consumer_key] = {"secret": consumer_secret, "permissions": permissions}

    def requests_to(self, path_part: str, method: str | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if path_part in r.path and (method is None or r.method == method)]

    def _next_id(self) -> int:
        return next(self._ids)

    # --- data -------------------------------------------------------------------------------------

    def add_order(self, order_id: int | None = None, *, status: str = "processing",
                  modified: dt.datetime = dt.datetime(2026, 11, 20, 9, 0), created: dt.datetime | None = None,
                  email: str | None = "zofia.nowak@example.pl", phone: str = "600 111 222", country: str = "PL",
                  payment_method: str = "p24-online-payments", paid: bool = True, created_via: str = "checkout",
                  total: str = "249.90", lines: list[dict] | None = None, coupon_codes: tuple[str, ...] = (),
                  customer_id: int = 0) -> dict:
        """An order shaped like `GET /wc/v3/orders/{id}` (docs sample plus the fields current cores add)."""
        order_id = order_id or self._next_id()
        created = created or modified
        items = lines if lines is not None else [{"name": "Bukiet róż", "product_id": 93, "variation_id": 0,
                                                  "quantity": 1, "subtotal": "229.90", "total": "229.90"}]
        line_items = [{"id": order_id * 10 + index, "name": item["name"], "product_id": item.get("product_id", 93),
                       "variation_id": item.get("variation_id", 0), "quantity": item.get("quantity", 1),
                       "tax_class": "", "subtotal": item.get("subtotal", "229.90"), "subtotal_tax": "0.00",
                       "total": item.get("total", item.get("subtotal", "229.90")), "total_tax": "0.00", "taxes": [],
                       "meta_data": [], "sku": item.get("sku", "ROZA-CZ"), "price": 229.9,
                       "image": {"id": 5, "src": "https://kwiaciarnia.example/wp-content/uploads/roza.jpg"},
                       "parent_name": None} for index, item in enumerate(items)]
        address = {"first_name": "Zofia", "last_name": "Nowak", "company": "", "address_1": "ul. Różana 5",
                   "address_2": "", "city": "Kraków", "state": "", "postcode": "30-001", "country": country}
        order_key = f"wc_order_{secrets.token_hex(6)}"
        order = {
            "id": order_id, "parent_id": 0, "number": str(order_id), "order_key": order_key,
            "created_via": created_via, "version": "10.3.0", "status": status, "currency": self.currency,
            "date_created": gmt(created + SHOP_UTC_OFFSET), "date_created_gmt": gmt(created),
            "date_modified": gmt(modified + SHOP_UTC_OFFSET), "date_modified_gmt": gmt(modified),
            "discount_total": "0.00", "discount_tax": "0.00", "shipping_total": "20.00", "shipping_tax": "0.00",
            "cart_tax": "0.00", "total": total, "total_tax": "0.00", "prices_include_tax": True,
            "customer_id": customer_id, "customer_ip_address": "", "customer_user_agent": "", "customer_note": "",
            "billing": {**address, "email": email, "phone": phone}, "shipping": {**address, "phone": ""},
            "payment_method": payment_method, "payment_method_title": "Przelewy24", "transaction_id": "",
            "date_paid": gmt(created + SHOP_UTC_OFFSET) if paid else None, "date_paid_gmt": gmt(created) if paid else None,
            "date_completed": None, "date_completed_gmt": None, "cart_hash": "", "meta_data": [],
            "line_items": line_items, "tax_lines": [],
            "shipping_lines": [{"id": order_id * 10 + 9, "method_title": "InPost Paczkomat 24/7",
                                "method_id": "flat_rate", "instance_id": "1", "total": "20.00", "total_tax": "0.00",
                                "taxes": [], "meta_data": []}],
            "fee_lines": [],
            "coupon_lines": [{"id": order_id * 10 + 8, "code": code, "discount": "10.00", "discount_tax": "0.00",
                              "meta_data": []} for code in coupon_codes],
            # Every order carries its order-pay link (WC_Order::get_checkout_payment_url); the page takes a payment
            # only when needs_payment (WC_Order::needs_payment: status pending or failed, unpaid, total above 0).
            "refunds": [],
            "payment_url": f"{self._home()}/checkout/order-pay/{order_id}/?pay_for_order=true&key={order_key}",
            "is_editable": status in ("pending", "on-hold", "checkout-draft"),
            "needs_payment": _needs_payment(status, paid, total), "needs_processing": True,
        }
        with self._lock:
            self.orders[order_id] = order
        return order

    def touch_order(self, order_id: int, modified: dt.datetime, **changes: Any) -> dict:
        with self._lock:
            order = self.orders[order_id]
            order.update(changes)
            if "needs_payment" not in changes:
                order["needs_payment"] = _needs_payment(order["status"], bool(order.get("date_paid_gmt")), order["total"])
            order["date_modified_gmt"] = gmt(modified)
            order["date_modified"] = gmt(modified + SHOP_UTC_OFFSET)
            return order

    def add_customer(self, customer_id: int | None = None, *, email: str = "zofia.nowak@example.pl",
                     modified: dt.datetime = dt.datetime(2026, 11, 20, 9, 0), phone: str = "+48 600 111 222") -> dict:
        customer_id = customer_id or self._next_id()
        address = {"first_name": "Zofia", "last_name": "Nowak", "company": "", "address_1": "ul. Różana 5",
                   "address_2": "", "city": "Kraków", "state": "", "postcode": "30-001", "country": "PL"}
        customer = {"id": customer_id, "date_created": gmt(modified + SHOP_UTC_OFFSET), "date_created_gmt": gmt(modified),
                    "date_modified": gmt(modified + SHOP_UTC_OFFSET), "date_modified_gmt": gmt(modified),
                    "email": email, "first_name": "Zofia", "last_name": "Nowak", "role": "customer",
                    "username": email.split("@")[0], "billing": {**address, "email": email, "phone": phone},
                    "shipping": {**address, "phone": ""}, "is_paying_customer": True,
                    "avatar_url": "https://secure.gravatar.com/avatar/0?s=96&d=mm&r=g", "meta_data": []}
        with self._lock:
            self.customers[customer_id] = customer
        return customer

    def add_product(self, product_id: int | None = None, *, name: str = "Bukiet róż", price: str = "229.90",
                    stock_status: str = "instock", status: str = "publish",
                    modified: dt.datetime = dt.datetime(2026, 11, 20, 9, 0)) -> dict:
        product_id = product_id or self._next_id()
        product = {"id": product_id, "name": name, "slug": "bukiet-roz", "permalink": f"{self._home()}/produkt/bukiet-roz/",
                   "date_created": gmt(modified + SHOP_UTC_OFFSET), "date_created_gmt": gmt(modified),
                   "date_modified": gmt(modified + SHOP_UTC_OFFSET), "date_modified_gmt": gmt(modified),
                   "type": "simple", "status": status, "sku": f"SKU-{product_id}", "price": price,
                   "regular_price": price, "sale_price": "", "purchasable": status == "publish",
                   "manage_stock": True, "stock_quantity": 0 if stock_status == "outofstock" else 7,
                   "stock_status": stock_status, "catalog_visibility": "visible",
                   "images": [{"id": 5, "src": "https://kwiaciarnia.example/wp-content/uploads/roza.jpg"}]}
        with self._lock:
            self.products[product_id] = product
        return product

    def add_refund(self, order_id: int, amount: str, *, created: dt.datetime = dt.datetime(2026, 11, 21, 10, 0),
                   reason: str = "") -> dict:
        refund_id = self._next_id()
        refund = {"id": refund_id, "parent_id": order_id, "date_created": gmt(created + SHOP_UTC_OFFSET),
                  "date_created_gmt": gmt(created), "date_modified_gmt": gmt(created), "amount": amount,
                  "reason": reason, "refunded_by": 1, "refunded_payment": False, "meta_data": [], "line_items": []}
        with self._lock:
            self.refunds[refund_id] = refund
            order = self.orders[order_id]
            order["refunds"].append({"id": refund_id, "reason": reason, "total": f"-{amount}"})
            order["date_modified_gmt"] = gmt(created)
        return refund

    def install_abandoned_cart_lite(self) -> None:
        self.extra_topics |= {"wcap_cart.cutoff", "wcap_cart.recovered"}

    def add_generated_orders(self, count: int, *, first_id: int = 50_000_000,
                             start: dt.datetime = dt.datetime(2026, 1, 1), lines: int = 2) -> None:
        """`count` orders that exist only while a page is served: order i has id first_id+i and was modified
        at start+i seconds. Only the sync listing (orderby=modified, order=asc) serves them."""
        template = self.add_order(1, modified=start, lines=[
            {"name": f"Produkt {n}", "product_id": 93 + n, "quantity": 1, "subtotal": "50.00"} for n in range(lines)])
        del self.orders[1]
        text = json.dumps(template, separators=(",", ":"))
        for key in ("date_created", "date_modified", "date_paid"):
            text = text.replace(f'"{key}":"{template[key]}"', f'"{key}":"@LOCAL@"')
        for key in ("date_created_gmt", "date_modified_gmt", "date_paid_gmt"):
            text = text.replace(f'"{key}":"{template[key]}"', f'"{key}":"@GMT@"')
        text = text.replace('"id":1,', '"id":@ID@,', 1).replace('"number":"1"', '"number":"@ID@"')
        self.generated = (count, first_id, start, text.encode())

    def _generated_page(self, query: dict[str, str]) -> tuple[int, Any, dict]:
        count, first_id, start, template = self.generated
        if query.get("orderby") != "modified" or query.get("order") != "asc":
            raise WCError(400, "rest_invalid_param", "the fake serves generated orders only oldest change first")
        per_page, page = int(query.get("per_page", 10)), int(query.get("page", 1))
        if not 1 <= per_page <= 100:
            raise WCError(400, "rest_invalid_param", "Invalid parameter(s): per_page")
        first = 0
        if query.get("modified_after"):
            bound = dt.datetime.fromisoformat(query["modified_after"][:19])
            first = min(count, max(0, int((bound - start).total_seconds()) + 1))
        total = count - first
        begin = first + (page - 1) * per_page
        chunk = []
        for index in range(begin, min(count, begin + per_page)):
            moment = start + dt.timedelta(seconds=index)
            chunk.append(template.replace(b"@ID@", str(first_id + index).encode())
                         .replace(b"@GMT@", gmt(moment).encode())
                         .replace(b"@LOCAL@", gmt(moment + SHOP_UTC_OFFSET).encode()))
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(math.ceil(total / per_page))}
        return 200, RawJSON(b"[" + b",".join(chunk) + b"]"), headers

    # --- webhook deliveries (what the shop would POST to us) ---------------------------------------------

    def delivery(self, webhook_id: int, payload: dict, *, delivered_at: float | None = None) -> tuple[bytes, dict]:
        """The body and headers WC_Webhook::deliver() sends for this webhook and payload."""
        hook = self.webhooks[webhook_id]
        body = php_json_encode(payload)
        signature = base64.b64encode(hmac.new(self.webhook_secrets[webhook_id].encode(), body,
                                              hashlib.sha256).digest()).decode()
        second = int(delivered_at if delivered_at is not None else self.clock())
        return body, {
            "Content-Type": "application/json", "User-Agent": "WooCommerce/10.3.0 Hookshot (WordPress/6.8.3)",
            "X-WC-Webhook-Source": f"{self._home()}/", "X-WC-Webhook-Topic": hook["topic"],
            "X-WC-Webhook-Resource": hook["resource"], "X-WC-Webhook-Event": hook["event"],
            "X-WC-Webhook-Signature": signature, "X-WC-Webhook-ID": str(webhook_id),
            # wp_hash(webhook_id . strtotime('now')): the same for every delivery of this webhook in one second
            "X-WC-Webhook-Delivery-ID": hashlib.md5(f"{webhook_id}{second}".encode()).hexdigest(),
        }

    def ping(self, webhook_id: int) -> tuple[bytes, dict]:
        """deliver_ping(): a form-encoded `webhook_id=N`, no X-WC-Webhook-* headers, no signature."""
        return f"webhook_id={webhook_id}".encode(), {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "WooCommerce/10.3.0 Hookshot (WordPress/6.8.3)"}

    def fail_deliveries(self, webhook_id: int, times: int) -> None:
        """Count failed deliveries like WC_Webhook::failed_delivery(): disabled after the 7th in a row."""
        for _ in range(times):
            hook = self.webhooks[webhook_id]
            if hook["failure_count"] > 5:
                hook["status"] = "disabled"
            else:
                hook["failure_count"] += 1

    # --- request handling (called by the handler) -------------------------------------------------------

    def _home(self) -> str:
        return self.url if self.running else "http://127.0.0.1"

    def _fault(self, method: str, path: str, query: dict[str, str]) -> Fault | None:
        with self._lock:
            for index, fault in enumerate(self._faults):
                if (fault.path is None or fault.path in path) and (fault.method is None or fault.method == method) \
                        and all(query.get(key) == str(value) for key, value in fault.query.items()):
                    del self._faults[index]
                    return fault
        return None

    def authenticate(self, method: str, path: str, query: dict[str, str], headers: dict[str, str]) -> dict:
        """WC_REST_Authentication: Basic (only when is_ssl) first, then OAuth 1.0a; returns the key record."""
        if self.is_ssl:
            key = secret = None
            if query.get("consumer_key") and query.get("consumer_secret"):
                key, secret = query["consumer_key"], query["consumer_secret"]
            elif (headers.get("authorization") or "").startswith("Basic "):
                try:
                    key, _, secret = base64.b64decode(headers["authorization"][6:]).decode().partition(":")
                except ValueError:
                    key = secret = None
            if key and secret:
                record = self.keys.get(key)
                if record is None:
                    raise WCError(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
                if not hmac.compare_digest(record["secret"], secret):
                    raise WCError(401, "woocommerce_rest_authentication_error", "Consumer secret is invalid.")
                return record
        oauth_names = ("oauth_consumer_key", "oauth_timestamp", "oauth_nonce", "oauth_signature",
                       "oauth_signature_method")
        present = [name for name in oauth_names if query.get(name)]
        if not present:
            raise WCError(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        missing = [name for name in oauth_names if not query.get(name)]
        if missing:
            raise WCError(401, "woocommerce_rest_authentication_missing_parameter",
                          f"Missing OAuth parameter {', '.join(missing)}")
        record = self.keys.get(query["oauth_consumer_key"])
        if record is None:
            raise WCError(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        if query["oauth_signature_method"] not in ("HMAC-SHA1", "HMAC-SHA256"):
            raise WCError(401, "woocommerce_rest_authentication_error", "Invalid signature - signature method is invalid.")
        if not wc_check_oauth_signature(method, self._home(), path, query, record["secret"]):
            raise WCError(401, "woocommerce_rest_authentication_error",
                          "Invalid signature - provided signature does not match.")
        timestamp = int(query["oauth_timestamp"])
        if abs(timestamp - self.clock()) > 15 * 60:
            raise WCError(401, "woocommerce_rest_authentication_error", "Invalid timestamp.")
        with self._lock:
            nonce = (query["oauth_consumer_key"], query["oauth_nonce"])
            if nonce in self.used_nonces:
                raise WCError(401, "woocommerce_rest_authentication_error",
                              "Invalid nonce - nonce has already been used.")
            self.used_nonces.add(nonce)
        return record

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: Any) -> tuple[int, Any, dict]:
        if path in ("/wp-json", "/wp-json/"):
            if query.get("consumer_key") or headers.get("authorization") or query.get("oauth_consumer_key"):
                # WooCommerce 11.1+: a WC key on a non-wc route is refused.
                raise WCError(401, "woocommerce_rest_authentication_error",
                              "The provided API key cannot be used to access this endpoint.")
            return 200, self._index(query), {}
        match = re.match(r"^/wp-json/(wc/v3|wc-shipment-tracking/v3)/(.*)$", path)
        if not match or (match.group(1) == "wc-shipment-tracking/v3" and not self.tracking_plugin):
            raise WCError(404, "rest_no_route", "No route was found matching the URL and request method.")
        namespace, route = match.groups()
        record = self.authenticate(method, path, query, headers)
        if method in ("POST", "PUT", "PATCH", "DELETE") and record["permissions"] not in ("write", "read_write"):
            raise WCError(401, "woocommerce_rest_authentication_error",
                          "The API key provided does not have write permissions.")
        if method == "GET" and record["permissions"] not in ("read", "read_write"):
            raise WCError(401, "woocommerce_rest_authentication_error",
                          "The API key provided does not have read permissions.")
        if namespace == "wc-shipment-tracking/v3":
            return self._tracking(method, route, body)
        return self._wc_v3(method, route, query, body)

    def _index(self, query: dict[str, str]) -> dict:
        namespaces = ["oembed/1.0", "wc/v1", "wc/v2", "wc/v3", "wc-telemetry", "wc-admin", "wc-analytics", "wp/v2"]
        if self.store_api:
            namespaces += ["wc/store", "wc/store/v1"]
        if self.tracking_plugin == "official":
            namespaces.append("wc-shipment-tracking/v3")
        elif self.tracking_plugin == "ast":
            namespaces += ["wc-ast/v3", "wc-shipment-tracking/v3"]
        index = {"name": "Kwiaciarnia Róża", "description": "", "url": self._home(), "home": self._home(),
                 "gmt_offset": "1", "timezone_string": "Europe/Warsaw", "namespaces": namespaces,
                 "authentication": {}, "routes": {"/": {"namespace": "", "methods": ["GET"]}}}
        return _select_fields(index, query.get("_fields"))

    def _wc_v3(self, method: str, route: str, query: dict[str, str], body: Any) -> tuple[int, Any, dict]:
        parts = route.strip("/").split("/")
        if method == "GET" and route == "orders" and self.generated:
            return self._generated_page(query)
        if method == "GET" and route == "orders":
            return self._list(self.orders.values(), query, filters=self._order_filters(query))
        if parts[0] == "orders" and len(parts) >= 2 and parts[1].isdigit():
            order = self.orders.get(int(parts[1]))
            if order is None:
                raise WCError(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
            if len(parts) == 2 and method == "GET":
                return 200, _select_fields(order, query.get("_fields")), {}
            if len(parts) == 2 and method == "PUT":
                changes = {key: body[key] for key in ("status",) if key in (body or {})}
                with self._lock:
                    order.update(changes)
                    order["date_modified_gmt"] = gmt(dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc))
                return 200, order, {}
            if len(parts) == 3 and parts[2] == "notes":
                return self._notes(method, order["id"], query, body)
            if len(parts) == 3 and parts[2] == "refunds" and method == "GET":
                return self._list([r for r in self.refunds.values() if r["parent_id"] == order["id"]], query)
        if method == "GET" and route == "refunds":
            return self._list(self.refunds.values(), query, filters=self._date_filters(query))
        if method == "GET" and route == "customers":
            return self._list(self.customers.values(), query)
        if method == "GET" and route == "products":
            filters = self._date_filters(query)
            if query.get("include"):
                wanted = {int(x) for x in query["include"].split(",")}
                filters.append(lambda item: item["id"] in wanted)
            return self._list(self.products.values(), query, filters=filters)
        if route == "coupons":
            return self._coupons(method, query, body)
        if parts[0] == "webhooks":
            return self._webhooks(method, parts, query, body)
        raise WCError(404, "rest_no_route", "No route was found matching the URL and request method.")

    def _order_filters(self, query: dict[str, str]) -> list[Callable[[dict], bool]]:
        filters = self._date_filters(query)
        statuses = [s for s in (query.get("status") or "any").split(",") if s]
        if "any" not in statuses:
            filters.append(lambda order: order["status"] in statuses)
        else:
            filters.append(lambda order: order["status"] != "trash")
        return filters

    @staticmethod
    def _date_filters(query: dict[str, str]) -> list[Callable[[dict], bool]]:
        filters = []
        if query.get("modified_after"):
            bound = query["modified_after"][:19]
            # Without dates_are_gmt the bound is read in the shop's time zone (and a trailing Z is ignored).
            key = "date_modified_gmt" if query.get("dates_are_gmt") == "true" else "date_modified"
            filters.append(lambda item: (item.get(key) or item.get("date_created_gmt")) > bound)
        return filters

    def _list(self, items: Any, query: dict[str, str],
              filters: list[Callable[[dict], bool]] | None = None) -> tuple[int, Any, dict]:
        per_page = int(query.get("per_page", 10))
        if not 1 <= per_page <= 100:
            raise WCError(400, "rest_invalid_param", "Invalid parameter(s): per_page",
                          params={"per_page": "per_page must be between 1 (inclusive) and 100 (inclusive)"})
        page = int(query.get("page", 1))
        with self._lock:
            selected = [item for item in items if all(f(item) for f in filters or [])]
        orderby, order = query.get("orderby", "date"), query.get("order", "desc")
        sort_key = {"modified": lambda i: (i.get("date_modified_gmt") or i.get("date_created_gmt"), i["id"]),
                    "id": lambda i: i["id"]}.get(orderby, lambda i: (i.get("date_created_gmt") or "", i["id"]))
        selected.sort(key=sort_key, reverse=order == "desc")
        total = len(selected)
        pages = max(1, math.ceil(total / per_page)) if total else 0
        chunk = selected[(page - 1) * per_page: page * per_page]
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        links = []
        if page > 1:
            links.append(f'<{self._home()}/wp-json/wc/v3/?page={page - 1}>; rel="prev"')
        if page < pages:
            links.append(f'<{self._home()}/wp-json/wc/v3/?page={page + 1}>; rel="next"')
        if links:
            headers["Link"] = ", ".join(links)
        if self.response_delay:
            time.sleep(self.response_delay)
        return 200, [_select_fields(item, query.get("_fields")) for item in chunk], headers

    def _notes(self, method: str, order_id: int, query: dict[str, str], body: Any) -> tuple[int, Any, dict]:
        notes = self.notes.setdefault(order_id, [])
        if method == "GET":
            kind = query.get("type", "any")
            return 200, [n for n in notes if kind == "any" or (kind == "customer") == n["customer_note"]], {}
        if method == "POST":
            if not (body or {}).get("note"):
                raise WCError(400, "rest_missing_callback_param", "Missing parameter(s): note", params=["note"])
            now = dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc)
            note = {"id": self._next_id(), "author": "WooCommerce", "date_created": gmt(now + SHOP_UTC_OFFSET),
                    "date_created_gmt": gmt(now), "note": body["note"],
                    "customer_note": bool(body.get("customer_note", False)), "added_by_user": False}
            notes.append(note)
            return 201, note, {}
        raise WCError(404, "rest_no_route", "No route was found matching the URL and request method.")

    def _coupons(self, method: str, query: dict[str, str], body: Any) -> tuple[int, Any, dict]:
        if method == "GET":
            code = (query.get("code") or "").lower()
            return self._list([c for c in self.coupons.values() if not code or c["code"] == code], query)
        if method == "POST":
            code = str((body or {}).get("code") or "").strip().lower()  # wc_format_coupon_code
            if not code:
                raise WCError(400, "rest_missing_callback_param", "Missing parameter(s): code", params=["code"])
            if any(c["code"] == code for c in self.coupons.values()):
                raise WCError(400, "woocommerce_rest_coupon_code_already_exists", "The coupon code already exists")
            coupon_id = self._next_id()
            coupon = {"id": coupon_id, "code": code, "amount": f"{float(body.get('amount', '0')):.2f}",
                      "discount_type": body.get("discount_type", "fixed_cart"), "description": body.get("description", ""),
                      "date_expires": None, "date_expires_gmt": body.get("date_expires_gmt"), "usage_count": 0,
                      "individual_use": bool(body.get("individual_use")), "usage_limit": body.get("usage_limit"),
                      "usage_limit_per_user": body.get("usage_limit_per_user"),
                      "email_restrictions": list(body.get("email_restrictions") or []), "used_by": [],
                      "meta_data": [{"id": i + 1, **m} for i, m in enumerate(body.get("meta_data") or [])]}
            self.coupons[coupon_id] = coupon
            return 201, coupon, {"Location": f"{self._home()}/wp-json/wc/v3/coupons/{coupon_id}"}
        raise WCError(404, "rest_no_route", "No route was found matching the URL and request method.")

    def _webhooks(self, method: str, parts: list[str], query: dict[str, str], body: Any) -> tuple[int, Any, dict]:
        valid = {f"{r}.{e}" for r in ("coupon", "customer", "order", "product")
                 for e in ("created", "updated", "deleted", "restored")} | self.extra_topics
        if len(parts) == 1 and method == "GET":
            status = query.get("status", "all")
            return self._list([h for h in self.webhooks.values() if status == "all" or h["status"] == status], query)
        if len(parts) == 1 and method == "POST":
            topic = (body or {}).get("topic")
            if topic not in valid and not str(topic).startswith("action."):
                raise WCError(400, "rest_invalid_param", "Invalid parameter(s): topic",
                              params={"topic": "topic is not one of the valid topics."})
            webhook_id = self._next_id()
            resource, _, event = topic.partition(".")
            hook = {"id": webhook_id, "name": body.get("name") or topic, "status": body.get("status", "active"),
                    "topic": topic, "resource": resource, "event": event, "hooks": [],
                    "delivery_url": body["delivery_url"], "date_created_gmt": gmt(dt.datetime(2026, 11, 20)),
                    "date_modified_gmt": gmt(dt.datetime(2026, 11, 20)), "failure_count": 0}
            self.webhooks[webhook_id] = hook
            self.webhook_secrets[webhook_id] = body.get("secret") or secrets.token_urlsafe(37)
            return 201, _public_hook(hook), {"Location": f"{self._home()}/wp-json/wc/v3/webhooks/{webhook_id}"}
        hook = self.webhooks.get(int(parts[1])) if len(parts) == 2 and parts[1].isdigit() else None
        if hook is None:
            raise WCError(404, "woocommerce_rest_webhook_invalid_id", "Invalid ID.")
        if method == "PUT":
            for key in ("name", "status", "topic", "delivery_url"):
                if key in body:
                    hook[key] = body[key]
            if "secret" in body:
                self.webhook_secrets[hook["id"]] = body["secret"]
            return 200, _public_hook(hook), {}
        if method == "DELETE":
            if query.get("force") != "true":
                raise WCError(501, "woocommerce_rest_trash_not_supported", "Webhooks do not support trashing.")
            del self.webhooks[hook["id"]]
            return 200, _public_hook(hook), {}
        return 200, _public_hook(hook), {}

    def _tracking(self, method: str, route: str, body: Any) -> tuple[int, Any, dict]:
        match = re.match(r"^orders/(\d+)/shipment-trackings/?$", route)
        if not match:
            raise WCError(404, "rest_no_route", "No route was found matching the URL and request method.")
        order_id = int(match.group(1))
        if order_id not in self.orders:
            raise WCError(404, "woocommerce_rest_order_invalid_id", "Invalid order ID.")
        items = self.trackings.setdefault(order_id, [])
        if method == "GET":
            return 200, list(items), {}
        if method == "POST":
            if not (body or {}).get("tracking_number"):
                raise WCError(400, "rest_missing_callback_param", "Missing parameter(s): tracking_number")
            if str(body.get("replace_tracking")) == "1":
                items.clear()
            provider = body.get("tracking_provider") or body.get("custom_tracking_provider") or ""
            # AST: md5("{provider}-{number}" . microtime()) — a new item on every POST, never idempotent.
            item = {"tracking_id": hashlib.md5(f"{provider}-{body['tracking_number']}{time.time_ns()}".encode()).hexdigest(),
                    "tracking_provider": provider, "tracking_link": (body.get("custom_tracking_link") or
                                                                     f"https://track.example/{body['tracking_number']}"),
                    "tracking_number": body["tracking_number"], "date_shipped": body.get("date_shipped")}
            items.append(item)
            self.notes.setdefault(order_id, []).append(
                {"id": self._next_id(), "author": "system", "date_created_gmt": gmt(dt.datetime(2026, 11, 21)),
                 "note": f"Order was shipped with {provider} and tracking number is: {body['tracking_number']}",
                 "customer_note": False, "added_by_user": False})
            return 201, item, {}
        raise WCError(404, "rest_no_route", "No route was found matching the URL and request method.")


def _public_hook(hook: dict) -> dict:
    return {key: value for key, value in hook.items() if key != "failure_count"}


def _needs_payment(status: str, paid: bool, total: str) -> bool:
    return status in ("pending", "failed") and not paid and Decimal(total) > 0


def _select_fields(item: dict, fields: str | None) -> dict:
    if not fields:
        return copy.deepcopy(item)
    wanted = {name.split(".")[0] for name in fields.split(",")}
    return {key: copy.deepcopy(value) for key, value in item.items() if key in wanted}


class _Handler(http.server.BaseHTTPRequestHandler):
    fake: FakeWooCommerce
    disable_nagle_algorithm = True  # no ~40 ms delayed-ACK stall per answer on loopback keep-alive
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: Any, headers: dict | None = None) -> None:
        data = bytes(body) if isinstance(body, RawJSON) else json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _serve(self) -> None:
        fake = self.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        # PHP's $_GET: "+" is a space, %XX decoded as UTF-8; the last of a repeated key wins.
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        headers = {key.lower(): value for key, value in self.headers.items()}
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        fake.requests.append(RecordedRequest(self.command, parts.path, query, headers, body))
        with fake._lock:
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            fault = fake._fault(self.command, parts.path, query)
            if fault is not None and not fault.apply_first:
                self._send(fault.status, fault.body if fault.body is not None else
                           {"code": "internal_server_error", "message": "fault", "data": {"status": fault.status}},
                           fault.headers)
                return
            try:
                status, payload, extra = fake.handle(self.command, parts.path, query, headers, body)
            except WCError as error:
                extra = {"WWW-Authenticate": 'Basic realm="WooCommerce API. Use a consumer key in the username field '
                                             'and a consumer secret in the password field."'} \
                    if error.status == 401 and fake.is_ssl else {}
                status, payload = error.status, error.body()
            if fault is not None:  # the work is done, the answer is lost
                self._send(fault.status, fault.body if fault.body is not None else
                           {"code": "internal_server_error", "message": "fault", "data": {"status": fault.status}},
                           fault.headers)
                return
            self._send(status, payload, extra)
        finally:
            with fake._lock:
                fake.in_flight -= 1

    do_GET = do_POST = do_PUT = do_DELETE = _serve


FakeWooCommerce.handler_class = _Handler


@pytest.fixture
def fake_woocommerce():
    with FakeWooCommerce() as fake:
        yield fake
