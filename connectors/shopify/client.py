"""The Admin GraphQL client for one shop: paced by query cost, retried where safe, paginated and bulk-streamed."""
from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable, Iterator

import requests

from connectors.errors import (
    AmbiguousOutcome, AuthError, ConnectorError, InvalidPayload, NotFound, RateLimited, TemporaryError,
)
from connectors.http import DEFAULT_TIMEOUT, SafeSession
from connectors.records import Money, StoreCart, StoreCustomer, StoreOrder, StoreProduct, utc
from connectors.shopify import mapping, queries
from connectors.shopify.bulk import group_bulk_lines
from connectors.shopify.retry import Backoff, never_sent, retry_after_seconds
from connectors.shopify.shop_domain import normalise_shop_domain
from connectors.shopify.throttle import BucketLedger, CostBucket
from connectors.shopify.version import API_VERSION
from connectors.shopify.webhooks import enum_to_topic, topic_to_enum

_OPERATION = re.compile(r"^\s*(query|mutation)\s+([_A-Za-z][_0-9A-Za-z]*)")
# Shopify refuses a single query costing more than 1000 points; pages with child lines stay under this.
_PAGE_COST_BUDGET = 800
_THROTTLE_DEFAULT_WAIT = 1.0


class UserErrors(ConnectorError):
    """Shopify accepted the request but refused the change; `errors` are its userErrors."""

    def __init__(self, operation: str, errors: list[dict]):
        self.errors = errors
        messages = "; ".join(f"{'.'.join(e.get('field') or []) or '-'}: {e.get('message')}" for e in errors)
        super().__init__(f"{operation} refused: {messages}")


class CodeAlreadyExists(UserErrors):
    """A discount code with this text already exists in the shop (possibly our own earlier attempt)."""


@dataclass(frozen=True)
class BulkOperation:
    id: str
    status: str
    error_code: str | None
    object_count: int
    url: str | None
    partial_data_url: str | None


@dataclass(frozen=True)
class WebhookSubscription:
    id: str
    topic: str  # REST-style, e.g. orders/create
    uri: str


@dataclass(frozen=True)
class _Resource:
    connection: str
    operation: str
    node_type: str
    fields: str
    sort_key: str
    build: Callable[[dict, list[dict] | None], Any]
    lines: tuple[str, str] | None = None
    paged_only_fields: str = ""  # bulk queries have no room for another connection


def _resources(api_version: str) -> dict[str, _Resource]:
    return {
        "orders": _Resource("orders", "OrdersUpdatedSince", "Order", queries.order_fields(api_version), "UPDATED_AT",
                            mapping.order_from_node, ("lineItems", queries.ORDER_LINE_FIELDS)),
        "customers": _Resource("customers", "CustomersUpdatedSince", "Customer", queries.CUSTOMER_FIELDS, "UPDATED_AT",
                               lambda node, lines: mapping.customer_from_node(node)),
        # AbandonedCheckoutSortKeys has no UPDATED_AT; the filter still selects by updated_at.
        "abandoned_checkouts": _Resource("abandonedCheckouts", "AbandonedCheckoutsUpdatedSince", "AbandonedCheckout",
                                         queries.CHECKOUT_FIELDS, "ID", mapping.cart_from_abandoned_checkout_node,
                                         ("lineItems", queries.CHECKOUT_LINE_FIELDS)),
        "products": _Resource("products", "ProductsUpdatedSince", "Product", queries.PRODUCT_FIELDS, "UPDATED_AT",
                              lambda node, lines: mapping.product_from_node(node),
                              paged_only_fields=" variants(first: 1) { nodes { sku } }"),
    }


def _search_time(moment: dt.datetime) -> str:
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def _user_errors(payload: dict | None) -> list[dict]:
    return list((payload or {}).get("userErrors") or [])


class ShopifyClient:
    """One shop, one token. Not shared between shops: nothing here is global."""

    def __init__(self, shop_domain: str, access_token: str, *, api_version: str = API_VERSION,
                 session: requests.Session | None = None, base_url: str | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
                 max_retries: int = 5, backoff: Backoff = Backoff(), timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                 bucket_ledger: BucketLedger | None = None):
        domain = normalise_shop_domain(shop_domain)
        if domain is None:
            raise ValueError(f"{shop_domain!r} is not a *.myshopify.com shop domain")
        self.shop_domain = domain
        self.api_version = api_version
        self._token = access_token
        self._session = session or SafeSession()
        self._endpoint = f"{(base_url or f'https://{domain}').rstrip('/')}/admin/api/{api_version}/graphql.json"
        self._sleep = sleep
        self._max_retries = max_retries
        self._backoff = backoff
        self._timeout = timeout
        # With a ledger, `clock` must be one every worker shares (time.time): the ledger compares their readings.
        self._bucket = CostBucket(clock, bucket_ledger)
        self._resources = _resources(api_version)

    def __repr__(self) -> str:  # the token stays out of logs
        return f"ShopifyClient({self.shop_domain!r}, api_version={self.api_version!r})"

    # --- transport --------------------------------------------------------------------------------

    def graphql(self, query: str, variables: dict | None = None, *, operation_name: str | None = None,
                idempotent: bool | None = None) -> dict:
        """Run one operation and return its `data`.

        Queries are retried on 5xx and timeouts; mutations (`idempotent` False by default) are not, because
        Shopify may have acted: those raise AmbiguousOutcome. Throttling and 429s are retried for both.
        """
        match = _OPERATION.match(query)
        operation = operation_name or (match.group(2) if match else None)
        if not operation:
            raise ValueError("every query needs an operation name, e.g. `query OrdersUpdatedSince(...)`")
        if idempotent is None:
            idempotent = not (match and match.group(1) == "mutation")
        body: dict[str, Any] = {"query": query, "variables": variables or {}, "operationName": operation}
        failure: ConnectorError = TemporaryError(f"{operation} was not attempted")
        for attempt in range(self._max_retries + 1):
            self._bucket.pace(operation, self._sleep)
            outcome = self._attempt(operation, body, idempotent, attempt)
            if isinstance(outcome, dict):
                return outcome
            failure, wait = outcome
            if attempt < self._max_retries:
                self._sleep(wait)
        raise failure

    def _attempt(self, operation: str, body: dict, idempotent: bool, attempt: int) -> dict | tuple[ConnectorError, float]:
        """One HTTP round trip: the data, or (the error to raise if we give up, seconds to wait before retrying)."""
        where = f"{operation} on {self.shop_domain}"
        try:
            response = self._session.post(self._endpoint, json=body, timeout=self._timeout, headers={
                "X-Shopify-Access-Token": self._token, "Content-Type": "application/json", "Accept": "application/json"})
        except requests.RequestException as exc:
            if not idempotent and not never_sent(exc):
                raise AmbiguousOutcome(f"{where}: {type(exc).__name__} after sending; it may have been applied") from None
            return TemporaryError(f"{where}: {type(exc).__name__}"), self._backoff.delay(attempt)

        status = response.status_code
        if status in (401, 403):
            raise AuthError(f"{where}: HTTP {status} {_error_text(response)}")
        if status == 429:
            wait = retry_after_seconds(response)
            wait = wait if wait is not None else self._backoff.delay(attempt)
            return RateLimited(f"{where}: HTTP 429 {_error_text(response)}", wait), wait
        if status >= 500:
            if not idempotent:
                raise AmbiguousOutcome(f"{where}: HTTP {status}; the change may have been applied")
            return TemporaryError(f"{where}: HTTP {status}"), self._backoff.delay(attempt)
        if status == 404:
            raise NotFound(f"{where}: HTTP 404 (unknown shop or API version {self.api_version})")
        if status != 200:
            raise ConnectorError(f"{where}: HTTP {status} {_error_text(response)}")
        try:
            payload = response.json()
        except ValueError:
            raise InvalidPayload(f"{where}: the answer is not JSON") from None

        self._bucket.observe(operation, (payload.get("extensions") or {}).get("cost"))
        errors = payload.get("errors") or []
        if isinstance(errors, str):
            errors = [{"message": errors}]
        codes = {str((error.get("extensions") or {}).get("code")) for error in errors}
        if "THROTTLED" in codes:
            wait = self._bucket.wait_after_throttle(operation, _THROTTLE_DEFAULT_WAIT)
            return RateLimited(f"{where}: throttled", wait), wait
        if "INTERNAL_SERVER_ERROR" in codes and idempotent:
            return TemporaryError(f"{where}: {_messages(errors)}"), self._backoff.delay(attempt)
        if errors:
            raise ConnectorError(f"{where}: {_messages(errors)}")
        if not isinstance(payload.get("data"), dict):
            raise InvalidPayload(f"{where}: the answer has no data")
        return payload["data"]

    # --- incremental sync -------------------------------------------------------------------------

    def orders_updated_since(self, since: dt.datetime, page_size: int = 100) -> Iterator[StoreOrder]:
        return self._updated_since("orders", since, page_size)

    def customers_updated_since(self, since: dt.datetime, page_size: int = 100) -> Iterator[StoreCustomer]:
        return self._updated_since("customers", since, page_size)

    def abandoned_checkouts_updated_since(self, since: dt.datetime, page_size: int = 100) -> Iterator[StoreCart]:
        return self._updated_since("abandoned_checkouts", since, page_size)

    def products_updated_since(self, since: dt.datetime, page_size: int = 100) -> Iterator[StoreProduct]:
        return self._updated_since("products", since, page_size)

    def _updated_since(self, resource: str, since: dt.datetime, page_size: int) -> Iterator[Any]:
        if not 1 <= page_size <= 250:
            raise ValueError("page_size must be between 1 and 250")
        spec = self._resources[resource]
        query = queries.updated_since_query(spec.operation, spec.connection, spec.fields + spec.paged_only_fields,
                                            sort_key=spec.sort_key, lines=spec.lines)
        variables: dict[str, Any] = {"first": page_size, "after": None,
                                     "query": f"updated_at:>='{_search_time(since)}'"}
        if spec.lines:
            variables["lines"] = max(1, min(50, _PAGE_COST_BUDGET // page_size - 3))
        while True:
            connection = self.graphql(query, variables).get(spec.connection) or {}
            for node in connection.get("nodes") or []:
                yield spec.build(node, self._all_lines(spec, node) if spec.lines else None)
            page = connection.get("pageInfo") or {}
            if not page.get("hasNextPage"):
                return
            variables["after"] = page.get("endCursor")

    def nodes_of(self, query: str, connection: str, variables: dict[str, Any], *, max_pages: int) -> tuple[list[dict], bool]:
        """The nodes of the first `max_pages` pages of `connection` (cursor variable `after`), and whether more
        pages remained after them."""
        nodes: list[dict] = []
        variables = {**variables, "after": variables.get("after")}
        for _ in range(max_pages):
            page_of = self.graphql(query, variables).get(connection) or {}
            nodes.extend(page_of.get("nodes") or [])
            page = page_of.get("pageInfo") or {}
            if not page.get("hasNextPage"):
                return nodes, False
            variables["after"] = page.get("endCursor")
        return nodes, True

    def _all_lines(self, spec: _Resource, node: dict) -> list[dict]:
        """The node's lines: those its page carried, then the rest fetched after the last cursor."""
        name, fields = spec.lines
        connection = node.get(name) or {}
        lines = list(connection.get("nodes") or [])
        page = connection.get("pageInfo") or {}
        query = queries.remaining_lines_query(f"{spec.node_type}LineItems", spec.node_type, name, fields)
        while page.get("hasNextPage"):
            found = (self.graphql(query, {"id": node["id"], "after": page.get("endCursor")}).get("node") or {}).get(name)
            if found is None:
                raise NotFound(f"{spec.node_type} {node['id']} disappeared while its lines were read")
            lines += found.get("nodes") or []
            page = found.get("pageInfo") or {}
        return lines

    # --- bulk operations ---------------------------------------------------------------------------

    def start_bulk_query(self, resource: str, since: dt.datetime | None = None) -> str:
        """Start a bulk export of `resource` (all of it, or what changed since `since`); returns the operation id."""
        if resource not in self._resources:
            raise ValueError(f"unknown resource {resource!r}; one of {', '.join(self._resources)}")
        spec = self._resources[resource]
        search = f"updated_at:>='{_search_time(since)}'" if since else None
        document = queries.bulk_query(spec.connection, spec.fields, search, spec.lines)
        # Re-sending is harmless: a duplicate start is refused with OPERATION_IN_PROGRESS, never run twice.
        result = self.graphql(queries.bulk_run_mutation(self.api_version), {"query": document},
                              idempotent=True).get("bulkOperationRunQuery") or {}
        if _user_errors(result):
            raise UserErrors("bulkOperationRunQuery", _user_errors(result))
        operation = result.get("bulkOperation") or {}
        if not operation.get("id"):
            raise InvalidPayload("bulkOperationRunQuery returned no operation")
        return operation["id"]

    def bulk_operation(self, operation_id: str) -> BulkOperation:
        node = self.graphql(queries.BULK_OPERATION, {"id": operation_id}).get("node")
        if not node:
            raise NotFound(f"bulk operation {operation_id} not found on {self.shop_domain}")
        return BulkOperation(id=node["id"], status=node.get("status") or "", error_code=node.get("errorCode"),
                             object_count=int(node.get("objectCount") or 0), url=node.get("url"),
                             partial_data_url=node.get("partialDataUrl"))

    def iter_bulk_records(self, resource: str, url: str) -> Iterator[Any]:
        """Stream a finished bulk file as records, one parent (and its lines) in memory at a time."""
        spec = self._resources[resource]
        build = spec.build if spec.lines else (lambda node, children: spec.build(node, None))
        # A plain GET: the file lives on a storage host that must never see the shop's access token.
        try:
            with self._session.get(url, stream=True, timeout=self._timeout) as response:
                if response.status_code != 200:
                    raise ConnectorError(f"bulk result for {resource} answered HTTP {response.status_code} "
                                         "(the URL expires after 7 days)")
                yield from group_bulk_lines(response.iter_lines(chunk_size=64 * 1024), build)
        except requests.RequestException as exc:
            raise TemporaryError(f"reading the bulk result for {resource} failed: {type(exc).__name__}") from None

    # --- webhook subscriptions ---------------------------------------------------------------------

    def webhook_subscriptions(self) -> list[WebhookSubscription]:
        found: list[WebhookSubscription] = []
        variables: dict[str, Any] = {"first": 100, "after": None}
        while True:
            connection = self.graphql(queries.WEBHOOK_SUBSCRIPTIONS, variables).get("webhookSubscriptions") or {}
            found += [WebhookSubscription(id=node["id"], topic=enum_to_topic(node.get("topic") or ""),
                                          uri=node.get("uri") or "") for node in connection.get("nodes") or []]
            page = connection.get("pageInfo") or {}
            if not page.get("hasNextPage"):
                return found
            variables["after"] = page.get("endCursor")

    def create_webhook_subscription(self, topic: str, uri: str) -> str:
        """Subscribe `topic` (orders/create or ORDERS_CREATE) to `uri`; returns the subscription id."""
        enum = topic if "/" not in topic else topic_to_enum(topic)
        result = self.graphql(queries.WEBHOOK_SUBSCRIPTION_CREATE, {
            "topic": enum, "webhookSubscription": {"uri": uri, "format": "JSON"}}).get("webhookSubscriptionCreate") or {}
        if _user_errors(result):
            raise UserErrors(f"webhookSubscriptionCreate {topic}", _user_errors(result))
        subscription = result.get("webhookSubscription") or {}
        if not subscription.get("id"):
            raise InvalidPayload("webhookSubscriptionCreate returned no subscription")
        return subscription["id"]

    def delete_webhook_subscription(self, subscription_id: str) -> None:
        result = self.graphql(queries.WEBHOOK_SUBSCRIPTION_DELETE, {"id": subscription_id}).get(
            "webhookSubscriptionDelete") or {}
        if _user_errors(result):
            raise UserErrors(f"webhookSubscriptionDelete {subscription_id}", _user_errors(result))

    # --- write-back ---------------------------------------------------------------------------------

    def fulfill_order(self, order_id: str, *, tracking_company: str, tracking_number: str, tracking_url: str,
                      notify_customer: bool) -> list[str]:
        """Fulfil what is still open on the order, one fulfillment per location, always with company, number and URL.

        Returns the new fulfillment ids (numeric, as webhooks name them); empty when nothing was left to fulfil.
        """
        order = self.graphql(queries.ORDER_FULFILLMENT_ORDERS, {"id": mapping.to_gid("Order", order_id)}).get("order")
        if order is None:
            raise NotFound(f"order {order_id} not found on {self.shop_domain}")
        by_location: dict[str, list[str]] = {}
        for fulfillment_order in (order.get("fulfillmentOrders") or {}).get("nodes") or []:
            remaining = sum(int(line.get("remainingQuantity") or 0)
                            for line in (fulfillment_order.get("lineItems") or {}).get("nodes") or [])
            if fulfillment_order.get("status") not in ("OPEN", "IN_PROGRESS") or remaining <= 0:
                continue
            location = ((fulfillment_order.get("assignedLocation") or {}).get("location") or {}).get("id")
            # fulfillmentCreate takes several fulfillment orders only when they share a location.
            by_location.setdefault(location or fulfillment_order["id"], []).append(fulfillment_order["id"])
        created = []
        for fulfillment_order_ids in by_location.values():
            result = self.graphql(queries.FULFILLMENT_CREATE, {"fulfillment": {
                "lineItemsByFulfillmentOrder": [{"fulfillmentOrderId": fo_id} for fo_id in fulfillment_order_ids],
                "notifyCustomer": notify_customer,
                # Company, number and URL together: for carriers Shopify does not know, the URL is the only link.
                "trackingInfo": {"company": tracking_company, "number": tracking_number, "url": tracking_url},
            }}).get("fulfillmentCreate") or {}
            if _user_errors(result):
                raise UserErrors(f"fulfillmentCreate for order {order_id}", _user_errors(result))
            created.append(mapping.gid_tail((result.get("fulfillment") or {}).get("id")))
        return [fulfillment_id for fulfillment_id in created if fulfillment_id]

    def create_discount_code(self, *, code: str, title: str, percentage: Decimal | None = None,
                             amount: Money | None = None, customer_id: str | None, starts_at: dt.datetime,
                             ends_at: dt.datetime) -> str:
        """A single-use code, once per customer, for one customer when given; returns the discount's numeric id.

        `percentage` is in percent (10 means 10 % off); `amount` is a fixed amount off the order.
        """
        if (percentage is None) == (amount is None):
            raise ValueError("give exactly one of percentage and amount")
        if percentage is not None:
            if not Decimal(0) < Decimal(percentage) <= Decimal(100):
                raise ValueError(f"percentage must be in (0, 100], got {percentage}")
            value: dict[str, Any] = {"percentage": float(Decimal(percentage) / 100)}  # Shopify wants 0.1 for 10 %
        else:
            value = {"discountAmount": {"amount": str(amount.amount), "appliesOnEachItem": False}}
        context = {"customers": {"add": [mapping.to_gid("Customer", customer_id)]}} if customer_id else {"all": "ALL"}
        result = self.graphql(queries.DISCOUNT_CODE_BASIC_CREATE, {"basicCodeDiscount": {
            "title": title, "code": code, "startsAt": utc(starts_at).isoformat(), "endsAt": utc(ends_at).isoformat(),
            "usageLimit": 1, "appliesOncePerCustomer": True, "context": context,
            "customerGets": {"value": value, "items": {"all": True}},
        }}).get("discountCodeBasicCreate") or {}
        errors = _user_errors(result)
        if any(_is_taken_code(error) for error in errors):
            raise CodeAlreadyExists(f"discountCodeBasicCreate {code}", errors)
        if errors:
            raise UserErrors(f"discountCodeBasicCreate {code}", errors)
        node_id = mapping.gid_tail((result.get("codeDiscountNode") or {}).get("id"))
        if node_id is None:
            raise InvalidPayload("discountCodeBasicCreate returned no discount")
        return node_id


def _is_taken_code(error: dict) -> bool:
    message = str(error.get("message") or "").lower()
    return error.get("code") == "TAKEN" or ("code" in message and ("unique" in message or "taken" in message))


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    errors = body.get("errors") if isinstance(body, dict) else None
    return str(errors)[:300] if errors else str(body)[:200]


def _messages(errors: list[dict]) -> str:
    return "; ".join(str(error.get("message")) for error in errors)[:500]
