"""A fake Shopify on loopback: the OAuth token endpoint, Admin GraphQL by operation name, bulk files; all recorded.

It speaks the documented shapes (shopify.dev, 2026-01) and is deliberately strict where Shopify is: it only
returns the fields a query names, enforces the cost bucket, refuses reused codes and refresh tokens, and writes
bulk children after their parent only when the operation asked for groupObjects.
"""
from __future__ import annotations

import base64
import datetime as dt
import functools
import http.server
import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator
from urllib.parse import parse_qsl

import pytest

from tests.loopback import LoopbackFake

INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"
DEFAULT_LOCATION = "gid://shopify/Location/1"
_OPERATION = re.compile(r"^\s*(?:query|mutation)\s+([_A-Za-z][_0-9A-Za-z]*)")
_UPDATED_SINCE = re.compile(r"updated_at:>='([^']+)'")
# WebhookSubscriptionTopic values the fake accepts (shopify.dev WebhookSubscriptionTopic, 2026-01).
_TOPIC_ENUMS = {
    "ORDERS_CREATE", "ORDERS_UPDATED", "ORDERS_PAID", "ORDERS_CANCELLED", "ORDERS_FULFILLED",
    "ORDERS_PARTIALLY_FULFILLED", "ORDERS_EDITED", "ORDERS_DELETE", "REFUNDS_CREATE", "CHECKOUTS_CREATE",
    "CHECKOUTS_UPDATE", "CHECKOUTS_DELETE", "CUSTOMERS_CREATE", "CUSTOMERS_UPDATE", "CUSTOMERS_DELETE",
    "CUSTOMERS_EMAIL_MARKETING_CONSENT_UPDATE", "CUSTOMERS_MARKETING_CONSENT_UPDATE", "FULFILLMENTS_CREATE",
    "FULFILLMENTS_UPDATE", "RETURNS_REQUEST", "RETURNS_APPROVE", "RETURNS_DECLINE", "RETURNS_CANCEL", "RETURNS_CLOSE",
    "RETURNS_REOPEN", "RETURNS_PROCESS", "RETURNS_UPDATE", "APP_UNINSTALLED", "APP_SCOPES_UPDATE",
    "BULK_OPERATIONS_FINISH", "SHOP_UPDATE",
}
_SORT_KEYS = {
    "orders": {"UPDATED_AT", "CREATED_AT", "ID", "PROCESSED_AT"},
    "customers": {"UPDATED_AT", "CREATED_AT", "ID"},
    "products": {"UPDATED_AT", "CREATED_AT", "ID", "TITLE"},
    "abandonedCheckouts": {"CHECKOUT_ID", "CREATED_AT", "CUSTOMER_NAME", "ID", "RELEVANCE", "TOTAL_PRICE"},
}


class FakeClock:
    """A clock that only moves when someone sleeps on it: share it between the client and the fake."""

    def __init__(self, start: float = 1_000.0):
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    operation: str | None = None
    variables: dict = field(default_factory=dict)
    body: Any = None


class GraphQLError(Exception):
    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


def money(amount: str, currency: str = "PLN") -> dict:
    return {"shopMoney": {"amount": amount, "currencyCode": currency},
            "presentmentMoney": {"amount": amount, "currencyCode": currency}}


def _cursor(position: int) -> str:
    return base64.b64encode(json.dumps({"last": position}).encode()).decode()


def _position(cursor: str | None) -> int:
    return json.loads(base64.b64decode(cursor))["last"] if cursor else 0


def _time(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


@functools.lru_cache(maxsize=8192)
def _named(key: str, query: str) -> bool:
    return re.search(rf"\b{key}\b", query) is not None


def select(value: Any, query: str) -> Any:
    """Keep only the keys the query names, the way a GraphQL server answers only what was asked."""
    if isinstance(value, dict):
        return {key: select(item, query) for key, item in value.items() if _named(key, query)}
    if isinstance(value, list):
        return [select(item, query) for item in value]
    return value


class FakeShopify(LoopbackFake):
    """One shop's Shopify. Fill its stores with add_* helpers, point clients at `.url`, assert on `.requests`."""

    def __init__(self, *, client_id: str = "companion-client-id", client_secret: str = "shpss_fake_secret",
                 access_token: str = "shpat_fake_token", clock: Callable[[], float] = time.monotonic,
                 maximum_available: float = 1000.0, restore_rate: float = 100.0, default_cost: float = 10,
                 bulk_polls_before_complete: int = 0, token_lifetime: int = 3600,
                 refresh_token_lifetime: int = 7_776_000, scope: str = "read_orders,read_customers,read_products"):
        self.client_id, self.client_secret, self.scope = client_id, client_secret, scope
        self.clock = clock
        self.token_lifetime, self.refresh_token_lifetime = token_lifetime, refresh_token_lifetime
        self.maximum_available, self.restore_rate, self.default_cost = maximum_available, restore_rate, default_cost
        self.costs: dict[str, float] = {}
        self.bulk_polls_before_complete = bulk_polls_before_complete
        self.requests: list[RecordedRequest] = []
        self.throttled = 0
        self.access_tokens: dict[str, float | None] = {access_token: None}  # token -> expires at (fake clock)
        self.refresh_tokens: dict[str, dict] = {}
        self.authorization_codes: set[str] = set()
        self.orders: dict[str, dict] = {}
        self.customers: dict[str, dict] = {}
        self.checkouts: dict[str, dict] = {}
        self.products: dict[str, dict] = {}
        self.generated_orders: list[tuple[int, int, int]] = []  # (count, lines per order, first id)
        self.bulk_operations: dict[str, dict] = {}
        self.subscriptions: dict[str, dict] = {}
        self.refused_topics: dict[str, str] = {}
        self.fulfillments: list[dict] = []
        self.discounts: dict[str, dict] = {}
        self._faults: list[tuple[str, int, Any, dict]] = []
        self._available = maximum_available
        self._bucket_at = clock()
        self._ids = itertools.count(1001)
        self._lock = threading.RLock()
        self._operations: dict[str, Callable[[dict, str], dict]] = {
            "OrdersUpdatedSince": self._orders_updated_since,
            "CustomersUpdatedSince": self._customers_updated_since,
            "AbandonedCheckoutsUpdatedSince": self._abandoned_checkouts_updated_since,
            "ProductsUpdatedSince": self._products_updated_since,
            "OrderLineItems": self._more_lines,
            "AbandonedCheckoutLineItems": self._more_lines,
            "BulkOperationRunQuery": self._bulk_operation_run_query,
            "BulkOperation": self._bulk_operation,
            "WebhookSubscriptions": self._webhook_subscriptions,
            "WebhookSubscriptionCreate": self._webhook_subscription_create,
            "WebhookSubscriptionDelete": self._webhook_subscription_delete,
            "OrderFulfillmentOrders": self._order_fulfillment_orders,
            "FulfillmentCreate": self._fulfillment_create,
            "DiscountCodeBasicCreate": self._discount_code_basic_create,
        }

    # --- test controls ------------------------------------------------------------------------------

    def issue_authorization_code(self) -> str:
        code = secrets.token_hex(16)
        self.authorization_codes.add(code)
        return code

    def fail_next(self, status: int, *, body: Any = None, headers: dict | None = None, times: int = 1,
                  endpoint: str = "graphql") -> None:
        """Answer the next `times` requests to `endpoint` (graphql | oauth) with this status instead."""
        self._faults += [(endpoint, status, body, headers or {})] * times

    def drain_bucket(self) -> None:
        with self._lock:
            self._available, self._bucket_at = 0.0, self.clock()

    def refuse_topic(self, topic_enum: str, message: str = "This app is not approved to subscribe to webhook "
                                                           "topics containing protected customer data.") -> None:
        self.refused_topics[topic_enum] = message

    def operations(self) -> list[str]:
        return [r.operation for r in self.requests if r.operation]

    def requests_for(self, operation: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.operation == operation]

    # --- data -------------------------------------------------------------------------------------

    def _gid(self, kind: str, value: int | None = None) -> str:
        return f"gid://shopify/{kind}/{value if value is not None else next(self._ids)}"

    def add_customer(self, customer_id: int | None = None, *, email: str = "zofia.nowak@example.pl",
                     phone: str | None = "+48600111222", first_name: str = "Zofia", last_name: str = "Nowak",
                     updated_at: str = "2026-11-20T09:00:00Z", email_state: str = "SUBSCRIBED",
                     sms_state: str = "NOT_SUBSCRIBED", locale: str = "pl") -> str:
        gid = self._gid("Customer", customer_id)
        self.customers[gid] = {
            "id": gid, "firstName": first_name, "lastName": last_name, "locale": locale, "updatedAt": updated_at,
            "createdAt": updated_at, "numberOfOrders": "1", "amountSpent": {"amount": "249.9", "currencyCode": "PLN"},
            "defaultEmailAddress": {"emailAddress": email, "marketingState": email_state,
                                    "marketingOptInLevel": "SINGLE_OPT_IN", "marketingUpdatedAt": updated_at},
            "defaultPhoneNumber": {"phoneNumber": phone, "marketingState": sms_state, "marketingOptInLevel": None,
                                   "marketingUpdatedAt": None, "marketingCollectedFrom": "OTHER"} if phone else None,
        }
        return gid

    def _line(self, index: int, item: dict, currency: str, kind: str) -> dict:
        line = {"id": self._gid(kind), "name": item.get("name", f"{item.get('title', 'Bukiet róż')}"),
                "title": item.get("title", "Bukiet róż"), "variantTitle": item.get("variant_title"),
                "quantity": item.get("quantity", 1), "sku": item.get("sku", f"SKU-{index}"),
                "originalUnitPriceSet": money(item.get("price", "100.00"), currency),
                "discountAllocations": [], "product": {"id": self._gid("Product", item.get("product_id", 632910392))},
                "variant": {"id": self._gid("ProductVariant", item.get("variant_id", 39072856 + index))},
                "image": {"url": item["image"]} if item.get("image") else None}
        if kind == "LineItem":
            del line["variantTitle"], line["image"]
        else:
            del line["name"], line["discountAllocations"]
        return line

    def add_order(self, order_id: int | None = None, *, name: str | None = None, updated_at: str = "2026-11-20T09:00:00Z",
                  currency: str = "PLN", total: str = "249.90", email: str | None = "zofia.nowak@example.pl",
                  phone: str | None = "+48600111222", customer_id: str | None = None, financial: str = "PAID",
                  fulfillment: str = "UNFULFILLED", lines: list[dict] | None = None,
                  fulfillment_orders: list[dict] | None = None, payment_collection_url: str | None = None,
                  status_page_url: str | None = "default") -> str:
        """An order node; `fulfillment_orders` like [{"location": gid, "status": "OPEN", "lines": [0, 1]}].

        `payment_collection_url` is Order.paymentCollectionDetails.additionalPaymentCollectionUrl (null unless
        money is owed); `status_page_url` is Order.statusPageUrl (a made-up status page unless given, None: null).
        """
        gid = self._gid("Order", order_id)
        if status_page_url == "default":
            status_page_url = f"https://kwiaciarnia-roza.pl/548380009/orders/{secrets.token_hex(16)}/authenticate?key=k"
        items = lines if lines is not None else [{"title": "Bukiet róż", "quantity": 1, "price": "229.90"}]
        line_nodes = [self._line(i, item, currency, "LineItem") for i, item in enumerate(items)]
        address = {"name": "Zofia Nowak", "firstName": "Zofia", "lastName": "Nowak", "company": None,
                   "address1": "ul. Różana 5", "address2": None, "city": "Kraków", "zip": "30-001",
                   "province": "Małopolskie", "countryCodeV2": "PL", "phone": phone}
        node = {
            "id": gid, "name": name or f"#{1000 + len(self.orders) + 1}", "email": email, "phone": phone,
            "createdAt": updated_at, "processedAt": updated_at, "updatedAt": updated_at, "cancelledAt": None,
            "displayFinancialStatus": financial, "displayFulfillmentStatus": fulfillment, "currencyCode": currency,
            "paymentGatewayNames": ["przelewy24"], "totalPriceSet": money(total, currency),
            "subtotalPriceSet": money("229.90", currency), "totalShippingPriceSet": money("20.00", currency),
            "totalTaxSet": money("46.73", currency), "totalDiscountsSet": money("0.00", currency),
            "customer": {"id": customer_id} if customer_id else None, "shippingLine": {"title": "InPost Paczkomat"},
            "shippingAddress": address, "billingAddress": address,
            "cartToken": "68778783ad298f1c80c3bafcddeea02f", "checkoutToken": "2a1ace52255252df566af0faaedfbfa7",
            "paymentCollectionDetails": {"additionalPaymentCollectionUrl": payment_collection_url},
            "statusPageUrl": status_page_url,
        }
        specs = fulfillment_orders if fulfillment_orders is not None else [{"location": DEFAULT_LOCATION}]
        orders_to_fulfil = []
        for spec in specs:
            indexes = spec.get("lines", range(len(line_nodes)))
            orders_to_fulfil.append({
                "id": self._gid("FulfillmentOrder"), "status": spec.get("status", "OPEN"),
                "assignedLocation": {"location": {"id": spec.get("location", DEFAULT_LOCATION)}},
                "lineItems": [{"id": self._gid("FulfillmentOrderLineItem"),
                               "remainingQuantity": line_nodes[i]["quantity"]} for i in indexes],
            })
        self.orders[gid] = {"node": node, "lines": line_nodes, "fulfillment_orders": orders_to_fulfil}
        return gid

    def touch_order(self, gid: str, updated_at: str, **fields: Any) -> dict:
        """Change an order node as the shop would (e.g. financial="PAID", payment_collection_url=...)."""
        names = {"financial": "displayFinancialStatus", "status_page_url": "statusPageUrl"}
        with self._lock:
            node = self.orders[gid]["node"]
            for key, value in fields.items():
                if key == "payment_collection_url":
                    node["paymentCollectionDetails"] = {"additionalPaymentCollectionUrl": value}
                else:
                    node[names.get(key, key)] = value
            node["updatedAt"] = updated_at
            return node

    def add_generated_orders(self, count: int, *, lines_per_order: int = 2, first_id: int = 50_000_000) -> None:
        """`count` orders that exist only in bulk results, produced line by line when the file is read."""
        self.generated_orders.append((count, lines_per_order, first_id))

    def add_abandoned_checkout(self, checkout_id: int | None = None, *, token: str | None = None,
                               updated_at: str = "2026-11-20T09:00:00Z", currency: str = "PLN", total: str = "229.90",
                               customer_id: str | None = None, email: str | None = "zofia.nowak@example.pl",
                               phone: str | None = "+48600111222", completed_at: str | None = None,
                               lines: list[dict] | None = None) -> str:
        gid = self._gid("AbandonedCheckout", checkout_id)
        token = token or secrets.token_hex(16)
        items = lines if lines is not None else [{"title": "Bukiet róż", "variant_title": "czerwony", "price": "229.90",
                                                  "image": "https://cdn.shopify.com/roza.jpg"}]
        node = {
            "id": gid, "abandonedCheckoutUrl": f"https://kwiaciarnia-roza.pl/548380009/checkouts/{token}/recover?key=k",
            "createdAt": updated_at, "updatedAt": updated_at, "completedAt": completed_at,
            "totalPriceSet": money(total, currency), "shippingAddress": {"phone": phone},
            "customer": {"id": customer_id or self._gid("Customer"), "defaultEmailAddress": {"emailAddress": email},
                         "defaultPhoneNumber": {"phoneNumber": phone} if phone else None},
        }
        self.checkouts[gid] = {"node": node, "lines": [self._line(i, item, currency, "AbandonedCheckoutLineItem")
                                                       for i, item in enumerate(items)]}
        return gid

    def add_product(self, product_id: int | None = None, *, title: str = "Bukiet róż", price: str = "229.90",
                    currency: str = "PLN", updated_at: str = "2026-11-20T09:00:00Z", inventory: int | None = 7,
                    status: str = "ACTIVE", sku: str = "ROZA-CZ") -> str:
        gid = self._gid("Product", product_id)
        self.products[gid] = {
            "id": gid, "title": title, "handle": "bukiet-roz", "status": status, "createdAt": updated_at,
            "updatedAt": updated_at, "onlineStoreUrl": "https://kwiaciarnia-roza.pl/products/bukiet-roz",
            "tracksInventory": inventory is not None, "totalInventory": inventory or 0,
            "priceRangeV2": {"minVariantPrice": {"amount": price, "currencyCode": currency}},
            "featuredMedia": {"preview": {"image": {"url": "https://cdn.shopify.com/roza.jpg"}}},
            "variants": {"nodes": [{"sku": sku}]},
        }
        return gid

    # --- HTTP entry points (called by the handler) ---------------------------------------------------

    def _fault(self, endpoint: str) -> tuple[int, Any, dict] | None:
        with self._lock:
            for index, (kind, status, body, headers) in enumerate(self._faults):
                if kind == endpoint:
                    del self._faults[index]
                    return status, body, headers
        return None

    def handle_oauth(self, form: dict) -> tuple[int, dict]:
        with self._lock:
            if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
                return 400, {"error": "invalid_client", "error_description": "Client authentication failed"}
            if form.get("code") is not None:
                if form["code"] not in self.authorization_codes:
                    return 400, {"error": "invalid_request",
                                 "error_description": "The authorization code was not found or was already used"}
                self.authorization_codes.discard(form["code"])
                return 200, self._issue_tokens(expiring=str(form.get("expiring")) in ("1", "true"))
            if form.get("grant_type") == "refresh_token":
                held = self.refresh_tokens.get(str(form.get("refresh_token")))
                if held is None or held["used"] or self.clock() >= held["expires_at"]:
                    return 400, {"error": "invalid_grant",
                                 "error_description": "The refresh token is invalid, expired, or has been used."}
                held["used"] = True  # rotation: a refresh token works once
                return 200, self._issue_tokens(expiring=True)
            return 400, {"error": "unsupported_grant_type", "error_description": "Unsupported grant type"}

    def _issue_tokens(self, *, expiring: bool) -> dict:
        access = f"shpat_{secrets.token_hex(16)}"
        if not expiring:
            self.access_tokens[access] = None
            return {"access_token": access, "scope": self.scope}
        refresh = f"shprt_{secrets.token_hex(16)}"
        self.access_tokens[access] = self.clock() + self.token_lifetime
        self.refresh_tokens[refresh] = {"used": False, "expires_at": self.clock() + self.refresh_token_lifetime}
        return {"access_token": access, "scope": self.scope, "expires_in": self.token_lifetime,
                "refresh_token": refresh, "refresh_token_expires_in": self.refresh_token_lifetime}

    def handle_graphql(self, token: str | None, body: dict) -> tuple[int, dict]:
        query, variables = str(body.get("query") or ""), body.get("variables") or {}
        match = _OPERATION.match(query)
        operation = match.group(1) if match else None
        with self._lock:
            expires = self.access_tokens.get(token or "", "unknown")
            if expires == "unknown" or (expires is not None and self.clock() >= expires):
                return 401, {"errors": INVALID_TOKEN}
            cost = self.costs.get(operation or "", self.default_cost)
            available = min(self.maximum_available,
                            self._available + (self.clock() - self._bucket_at) * self.restore_rate)
            self._bucket_at = self.clock()
            if cost > available:
                self._available = available
                self.throttled += 1
                return 200, {"errors": [{"message": "Throttled", "extensions": {
                    "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                    "extensions": self._cost(cost, None)}
            self._available = available - cost
            handler = self._operations.get(operation or "")
            if handler is None:
                return 200, {"errors": [{"message": f"fake Shopify does not know operation {operation!r}"}]}
            try:
                data = handler(variables, query)
            except GraphQLError as exc:
                error = {"message": str(exc), **({"extensions": {"code": exc.code}} if exc.code else {})}
                return 200, {"errors": [error], "extensions": self._cost(cost, cost)}
            return 200, {"data": data, "extensions": self._cost(cost, cost)}

    def _cost(self, requested: float, actual: float | None) -> dict:
        return {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": {
            "maximumAvailable": self.maximum_available, "currentlyAvailable": self._available,
            "restoreRate": self.restore_rate}}}

    # --- paginated reads ----------------------------------------------------------------------------

    def _page(self, connection: str, entries: list[dict], variables: dict, query: str,
              line_field: str | None = None) -> dict:
        sort_key = (re.search(r"sortKey:\s*(\w+)", query) or [None, "ID"])[1]
        if sort_key not in _SORT_KEYS[connection]:
            raise GraphQLError(f"Argument 'sortKey' on Field '{connection}' has an invalid value ({sort_key}).",
                               "argumentLiteralsIncompatible")
        since = _UPDATED_SINCE.search(variables.get("query") or "")
        if since:
            entries = [e for e in entries if _time(e["node"]["updatedAt"]) >= _time(since.group(1))]
        if sort_key == "UPDATED_AT":
            entries = sorted(entries, key=lambda e: (_time(e["node"]["updatedAt"]), e["node"]["id"]))
        start, first = _position(variables.get("after")), int(variables["first"])
        chosen = entries[start:start + first]
        nodes = []
        for entry in chosen:
            node = dict(entry["node"])
            if line_field:
                shown = int(variables.get("lines", 250))
                node[line_field] = {"nodes": entry["lines"][:shown], "pageInfo": {
                    "hasNextPage": len(entry["lines"]) > shown, "endCursor": _cursor(shown)}}
            nodes.append(select(node, query))
        end = start + len(chosen)
        return {connection: {"nodes": nodes, "pageInfo": {"hasNextPage": end < len(entries), "endCursor": _cursor(end)}}}

    def _orders_updated_since(self, variables: dict, query: str) -> dict:
        return self._page("orders", list(self.orders.values()), variables, query, "lineItems")

    def _customers_updated_since(self, variables: dict, query: str) -> dict:
        return self._page("customers", [{"node": n} for n in self.customers.values()], variables, query)

    def _abandoned_checkouts_updated_since(self, variables: dict, query: str) -> dict:
        return self._page("abandonedCheckouts", list(self.checkouts.values()), variables, query, "lineItems")

    def _products_updated_since(self, variables: dict, query: str) -> dict:
        return self._page("products", [{"node": n} for n in self.products.values()], variables, query)

    def _more_lines(self, variables: dict, query: str) -> dict:
        entry = self.orders.get(variables["id"]) or self.checkouts.get(variables["id"])
        if entry is None:
            return {"node": None}
        start = _position(variables.get("after"))
        chosen = entry["lines"][start:start + 250]
        end = start + len(chosen)
        return {"node": {"lineItems": {"nodes": [select(line, query) for line in chosen], "pageInfo": {
            "hasNextPage": end < len(entry["lines"]), "endCursor": _cursor(end)}}}}

    # --- bulk operations ----------------------------------------------------------------------------

    def _bulk_operation_run_query(self, variables: dict, query: str) -> dict:
        running = [op for op in self.bulk_operations.values() if op["status"] in ("CREATED", "RUNNING")]
        if running:
            return {"bulkOperationRunQuery": {"bulkOperation": None, "userErrors": [{
                "field": ["query"], "code": "OPERATION_IN_PROGRESS",
                "message": f"A bulk query operation for this app and shop is already in progress: {running[0]['id']}."}]}}
        inner = str(variables.get("query") or "")
        connection = re.match(r"^\s*\{\s*(\w+)", inner)
        if connection is None or connection.group(1) not in _SORT_KEYS:
            return {"bulkOperationRunQuery": {"bulkOperation": None, "userErrors": [{
                "field": ["query"], "code": "INVALID", "message": "Invalid bulk query: no supported connection"}]}}
        gid = self._gid("BulkOperation")
        self.bulk_operations[gid] = {
            "id": gid, "status": "CREATED", "polls_left": self.bulk_polls_before_complete,
            "connection": connection.group(1), "query": inner, "since": _UPDATED_SINCE.search(inner),
            "grouped": bool(re.search(r"groupObjects:\s*true", query)),
        }
        return {"bulkOperationRunQuery": {"bulkOperation": {"id": gid, "status": "CREATED"}, "userErrors": []}}

    def _bulk_operation(self, variables: dict, query: str) -> dict:
        operation = self.bulk_operations.get(variables.get("id"))
        if operation is None:
            return {"node": None}
        if operation["status"] != "COMPLETED":
            if operation["polls_left"] > 0:
                operation["polls_left"] -= 1
                operation["status"] = "RUNNING"
            else:
                operation["status"] = "COMPLETED"
        done = operation["status"] == "COMPLETED"
        number = operation["id"].rsplit("/", 1)[1]
        return {"node": select({
            "id": operation["id"], "status": operation["status"], "errorCode": None,
            "objectCount": str(self._bulk_object_count(operation)) if done else "0",
            "url": f"{self.url}/bulk/{number}.jsonl" if done else None, "partialDataUrl": None}, query)}

    def _bulk_entries(self, operation: dict) -> tuple[list[dict], str | None]:
        stores = {"orders": (self.orders, "lineItems"), "abandonedCheckouts": (self.checkouts, "lineItems"),
                  "customers": (self.customers, None), "products": (self.products, None)}
        store, children = stores[operation["connection"]]
        entries = [entry if children else {"node": entry} for entry in store.values()]
        if operation["since"]:
            entries = [e for e in entries if _time(e["node"]["updatedAt"]) >= _time(operation["since"].group(1))]
        return entries, children

    def _bulk_object_count(self, operation: dict) -> int:
        entries, children = self._bulk_entries(operation)
        count = sum(1 + len(e.get("lines", [])) for e in entries)
        if operation["connection"] == "orders":
            count += sum(n * (1 + per) for n, per, _ in self.generated_orders)
        return count

    def bulk_lines(self, number: str) -> Iterator[dict]:
        """The operation's JSONL objects, produced lazily; children right after their parent only if grouped."""
        operation = self.bulk_operations.get(f"gid://shopify/BulkOperation/{number}")
        if operation is None or operation["status"] != "COMPLETED":
            return
        with self._lock:
            entries, children = self._bulk_entries(operation)
        query = operation["query"]

        def parents_and_children() -> Iterator[tuple[dict, list[dict]]]:
            for entry in entries:
                yield select(entry["node"], query), [select(line, query) for line in entry.get("lines", [])]
            if operation["connection"] == "orders":
                for count, per, first_id in self.generated_orders:
                    for index in range(count):
                        yield self._generated_order(first_id + index, per, query)

        if operation["grouped"]:
            for parent, lines in parents_and_children():
                yield parent
                yield from ({**line, "__parentId": parent["id"]} for line in lines)
        else:  # what Shopify does from 2026-01 without groupObjects: children come later, anywhere
            for parent, _ in parents_and_children():
                yield parent
            for parent, lines in parents_and_children():
                yield from ({**line, "__parentId": parent["id"]} for line in lines)

    def _generated_order(self, number: int, lines: int, query: str) -> tuple[dict, list[dict]]:
        stamp = "2026-11-20T09:00:00Z"
        node = {"id": f"gid://shopify/Order/{number}", "name": f"#G{number}", "email": f"klient{number}@example.pl",
                "phone": None, "createdAt": stamp, "processedAt": stamp, "updatedAt": stamp, "cancelledAt": None,
                "displayFinancialStatus": "PAID", "displayFulfillmentStatus": "FULFILLED", "currencyCode": "RON",
                "paymentGatewayNames": ["netopia"], "totalPriceSet": money(f"{lines * 50}.00", "RON"),
                "subtotalPriceSet": money(f"{lines * 50}.00", "RON"), "totalShippingPriceSet": money("0.00", "RON"),
                "totalTaxSet": money("0.00", "RON"), "totalDiscountsSet": money("0.00", "RON"), "customer": None,
                "shippingLine": {"title": "FAN Courier"}, "shippingAddress": None, "billingAddress": None}
        children = [{"id": f"gid://shopify/LineItem/{number * 100 + i}", "name": f"Mărțișor {i}", "title": "Mărțișor",
                     "quantity": 1, "sku": f"MRT-{i}", "originalUnitPriceSet": money("50.00", "RON"),
                     "discountAllocations": [], "product": {"id": "gid://shopify/Product/1"},
                     "variant": {"id": f"gid://shopify/ProductVariant/{i}"}} for i in range(lines)]
        return select(node, query), [select(child, query) for child in children]

    # --- webhook subscriptions ------------------------------------------------------------------------

    def _webhook_subscriptions(self, variables: dict, query: str) -> dict:
        entries = list(self.subscriptions.values())
        start, first = _position(variables.get("after")), int(variables["first"])
        chosen = entries[start:start + first]
        end = start + len(chosen)
        return {"webhookSubscriptions": {"nodes": [select(s, query) for s in chosen], "pageInfo": {
            "hasNextPage": end < len(entries), "endCursor": _cursor(end)}}}

    def _webhook_subscription_create(self, variables: dict, query: str) -> dict:
        topic, subscription = variables.get("topic"), variables.get("webhookSubscription") or {}
        if topic not in _TOPIC_ENUMS:
            raise GraphQLError(f"Variable $topic of type WebhookSubscriptionTopic! was provided invalid value {topic!r}",
                               "INVALID_VARIABLE")

        def refused(field_name: str, message: str) -> dict:
            return {"webhookSubscriptionCreate": {"webhookSubscription": None,
                                                  "userErrors": [{"field": ["webhookSubscription", field_name],
                                                                  "message": message}]}}

        if topic in self.refused_topics:
            return refused("topic", self.refused_topics[topic])
        if not str(subscription.get("uri") or "").startswith(("https://", "http://127.0.0.1")):
            return refused("uri", "Address protocol http:// is not supported")
        if any(s["topic"] == topic and s["uri"] == subscription["uri"] for s in self.subscriptions.values()):
            return refused("callbackUrl", "Address for this topic has already been taken")
        gid = self._gid("WebhookSubscription")
        self.subscriptions[gid] = {"id": gid, "topic": topic, "uri": subscription["uri"],
                                   "format": subscription.get("format")}
        return {"webhookSubscriptionCreate": {"webhookSubscription": select(self.subscriptions[gid], query),
                                              "userErrors": []}}

    def _webhook_subscription_delete(self, variables: dict, query: str) -> dict:
        if self.subscriptions.pop(variables.get("id"), None) is None:
            return {"webhookSubscriptionDelete": {"deletedWebhookSubscriptionId": None, "userErrors": [
                {"field": ["id"], "message": "Webhook subscription does not exist"}]}}
        return {"webhookSubscriptionDelete": {"deletedWebhookSubscriptionId": variables["id"], "userErrors": []}}

    # --- fulfillment ----------------------------------------------------------------------------------

    def _order_fulfillment_orders(self, variables: dict, query: str) -> dict:
        entry = self.orders.get(variables.get("id"))
        if entry is None:
            return {"order": None}
        nodes = [{**fo, "lineItems": {"nodes": fo["lineItems"]}} for fo in entry["fulfillment_orders"]]
        return {"order": {"id": variables["id"], "fulfillmentOrders": {"nodes": [select(n, query) for n in nodes]}}}

    def _fulfillment_create(self, variables: dict, query: str) -> dict:
        fulfillment = variables.get("fulfillment") or {}
        wanted = [item.get("fulfillmentOrderId") for item in fulfillment.get("lineItemsByFulfillmentOrder") or []]
        found = {fo["id"]: (order_id, fo) for order_id, entry in self.orders.items()
                 for fo in entry["fulfillment_orders"] if fo["id"] in wanted}

        def refused(message: str) -> dict:
            return {"fulfillmentCreate": {"fulfillment": None, "userErrors": [
                {"field": ["fulfillment"], "message": message}]}}

        if not wanted or len(found) != len(wanted):
            return refused("Fulfillment order does not exist.")
        if len({fo["assignedLocation"]["location"]["id"] for _, fo in found.values()}) > 1:
            return refused("All fulfillment orders must be assigned to the same location.")
        if any(fo["status"] not in ("OPEN", "IN_PROGRESS") for _, fo in found.values()):
            return refused("Fulfillment order has an unfulfillable status.")
        tracking = fulfillment.get("trackingInfo") or {}
        if tracking.get("url") and not tracking.get("number"):
            return refused("Tracking number must be provided with a tracking URL.")
        gid = self._gid("Fulfillment")
        for _, fo in found.values():
            fo["status"] = "CLOSED"
            for line in fo["lineItems"]:
                line["remainingQuantity"] = 0
        self.fulfillments.append({"id": gid, "order_id": next(iter(found.values()))[0], "fulfillment_order_ids": wanted,
                                  "tracking_info": tracking, "notify_customer": fulfillment.get("notifyCustomer", False)})
        return {"fulfillmentCreate": {"fulfillment": select({"id": gid, "status": "SUCCESS"}, query), "userErrors": []}}

    # --- discounts ------------------------------------------------------------------------------------

    def _discount_code_basic_create(self, variables: dict, query: str) -> dict:
        discount = variables.get("basicCodeDiscount") or {}

        def refused(field_name: str, code: str, message: str) -> dict:
            return {"discountCodeBasicCreate": {"codeDiscountNode": None, "userErrors": [
                {"field": ["basicCodeDiscount", field_name], "code": code, "message": message}]}}

        for required in ("code", "title", "startsAt", "customerGets"):
            if not discount.get(required):
                return refused(required, "BLANK", f"{required} can't be blank")
        if not (discount.get("context") or discount.get("customerSelection")):
            return refused("context", "BLANK", "Context can't be blank")
        percentage = ((discount["customerGets"].get("value") or {}).get("percentage"))
        if percentage is not None and not 0 < float(percentage) <= 1:
            return refused("customerGets", "VALUE_OUTSIDE_RANGE", "Value must be between 0.0 and 1.0")
        if discount["code"].upper() in self.discounts:
            return refused("code", "TAKEN", "Code must be unique. Please try a different code.")
        gid = self._gid("DiscountCodeNode")
        self.discounts[discount["code"].upper()] = {"id": gid, **discount}
        return {"discountCodeBasicCreate": {"codeDiscountNode": select({"id": gid}, query), "userErrors": []}}


class _Handler(http.server.BaseHTTPRequestHandler):
    fake: FakeShopify
    disable_nagle_algorithm = True  # no ~40 ms delayed-ACK stall per answer on loopback keep-alive

    def log_message(self, *args) -> None:
        pass

    def _record(self, operation: str | None = None, variables: dict | None = None, body: Any = None) -> None:
        self.fake.requests.append(RecordedRequest(self.command, self.path, dict(self.headers.items()), operation,
                                                  variables or {}, body))

    def _send(self, status: int, body: Any, headers: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/admin/oauth/access_token":
            form = json.loads(raw) if "json" in (self.headers.get("Content-Type") or "") else dict(parse_qsl(raw.decode()))
            self._record(body=form)
            fault = self.fake._fault("oauth")
            self._send(*(fault if fault else self.fake.handle_oauth(form)))
            return
        if re.fullmatch(r"/admin/api/[\w-]+/graphql\.json", self.path):
            body = json.loads(raw or b"{}")
            match = _OPERATION.match(str(body.get("query") or ""))
            self._record(match.group(1) if match else None, body.get("variables"), body)
            fault = self.fake._fault("graphql")
            self._send(*(fault if fault else self.fake.handle_graphql(self.headers.get("X-Shopify-Access-Token"), body)))
            return
        self._record(body=raw)
        self._send(404, {"errors": "Not Found"})

    def do_GET(self) -> None:
        self._record()
        match = re.fullmatch(r"/bulk/(\d+)\.jsonl", self.path)
        if match is None:
            self._send(404, {"errors": "Not Found"})
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/jsonl")
        self.end_headers()  # no Content-Length: HTTP/1.0, the body ends when the connection closes
        buffer: list[bytes] = []
        size = 0
        try:
            for item in self.fake.bulk_lines(match.group(1)):
                line = json.dumps(item, ensure_ascii=False).encode() + b"\n"
                buffer.append(line)
                size += len(line)
                if size >= 64 * 1024:
                    self.wfile.write(b"".join(buffer))
                    buffer, size = [], 0
            self.wfile.write(b"".join(buffer))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the reader stopped early; that is its right


FakeShopify.handler_class = _Handler


@pytest.fixture
def fake_shopify():
    """A started FakeShopify, stopped after the test."""
    fake = FakeShopify().start()
    yield fake
    fake.stop()
