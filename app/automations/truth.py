"""Send-time truth: re-read the live store before a recovery message, through one function per platform.

A check answers what the store says *now* about a cart or an order: orders placed since the cart was
last touched that match its token, email or phone, whether the checkout completed, whether an order is paid,
and for an order the links the store gives for paying it (`StoreOrder.payment_url`, `status_url`).
When the store cannot be asked, the check raises StoreUnreachable and the caller postpones; it never guesses.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from connectors.records import StoreOrder


class StoreUnreachable(Exception):
    """The store could not be asked (down, throttled, token revoked); try again later."""


@dataclass(frozen=True)
class LiveQuery:
    shop_id: int
    platform: str
    since: dt.datetime
    email: str | None = None
    phone: str | None = None
    tokens: tuple[str, ...] = ()
    order_platform_id: str | None = None


@dataclass(frozen=True)
class LiveState:
    orders: tuple[StoreOrder, ...] = ()  # orders the store holds that match the query (placed or updated since)
    checkout_completed: bool = False
    checked_at: dt.datetime | None = None
    partial: frozenset[str] = frozenset()  # orders read without all their lines: decide on them, do not store them


TruthCheck = Callable[[sessionmaker[Session], Settings, LiveQuery], LiveState]
_checks: dict[str, TruthCheck] = {}


def register_truth_check(platform: str) -> Callable[[TruthCheck], TruthCheck]:
    """Register `check(sessions, settings, query) -> LiveState` as the live re-read for `platform`."""
    def register(func: TruthCheck) -> TruthCheck:
        _checks[platform] = func
        return func

    return register


def has_truth_check(platform: str) -> bool:
    return platform in _checks


def read_live_state(sessions: sessionmaker[Session], settings: Settings, query: LiveQuery) -> LiveState:
    """The store's current answer; StoreUnreachable when it cannot be had (including no check for the platform)."""
    check = _checks.get(query.platform)
    if check is None:
        raise StoreUnreachable(f"no live check is registered for platform {query.platform!r}")
    return check(sessions, settings, query)


def order_matches(order: StoreOrder, query: LiveQuery) -> bool:
    if query.order_platform_id and order.platform_id == query.order_platform_id:
        return True
    if query.tokens and {order.cart_token, order.checkout_token} & set(query.tokens):
        return True
    if query.email and order.email and order.email.lower() == query.email.lower():
        return True
    return bool(query.phone and order.phone and order.phone == query.phone)


def purchase_since(live: LiveState, query: LiveQuery, *, exclude_platform_id: str | None = None) -> StoreOrder | None:
    """A live order that ends a cart's recovery: matched by token, email or phone, placed since the query's time."""
    for order in live.orders:
        if order.platform_id == exclude_platform_id or order.cancelled_at is not None:
            continue
        if order_matches(order, query) and (order.placed_at is None or order.placed_at >= query.since):
            return order
    return None


# --- Shopify -------------------------------------------------------------------------------------------

_SHOPIFY_PAGES = 5


@register_truth_check("shopify")
def shopify_live_state(sessions: sessionmaker[Session], settings: Settings, query: LiveQuery) -> LiveState:
    from app.jobs.runner import PermanentJobError
    from app.models import utcnow
    from app.shopify.access import admin_client
    from connectors.errors import ConnectorError
    from connectors.shopify import mapping, queries

    try:
        client = admin_client(sessions, settings, query.shop_id, quick=True)
        since = query.since.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        who = [f"email:'{query.email}'"] if query.email else []
        who += [f"phone:'{query.phone}'"] if query.phone else []
        search = f"updated_at:>='{since}'" + (f" AND ({' OR '.join(who)})" if who else "")
        fields = queries.order_fields(client.api_version)
        if query.order_platform_id:  # a message about this order may carry its payment link
            fields = f"{fields} {queries.ORDER_PAYMENT_FIELDS}"
        order_query = queries.updated_since_query("OrdersUpdatedSince", "orders", fields, sort_key="UPDATED_AT",
                                                  lines=("lineItems", queries.ORDER_LINE_FIELDS))
        orders: list[StoreOrder] = []
        partial: set[str] = set()
        variables: dict = {"first": 25, "after": None, "query": search, "lines": 20}
        for _ in range(_SHOPIFY_PAGES):
            connection = client.graphql(order_query, variables).get("orders") or {}
            for node in connection.get("nodes") or []:
                order = mapping.order_from_node(node)
                orders.append(order)
                if ((node.get("lineItems") or {}).get("pageInfo") or {}).get("hasNextPage"):
                    partial.add(order.platform_id)
            page = connection.get("pageInfo") or {}
            if not page.get("hasNextPage"):
                break
            variables["after"] = page.get("endCursor")
        completed = False
        if query.tokens:
            checkouts = client.abandoned_checkouts_updated_since(query.since, page_size=50)
            completed = any(cart.token in query.tokens and cart.completed_at is not None for cart in checkouts)
    except (ConnectorError, PermanentJobError) as exc:
        raise StoreUnreachable(f"shopify: {type(exc).__name__}: {exc}") from None
    matching = tuple(order for order in orders if order_matches(order, query))
    return LiveState(orders=matching, checkout_completed=completed, checked_at=utcnow(), partial=frozenset(partial))


# --- WooCommerce -----------------------------------------------------------------------------------------

# Read-only fields of a wc/v3 order: the "order-pay" link, and whether that page will take a payment now.
PAYMENT_FIELDS = ("payment_url", "needs_payment")


@register_truth_check("woocommerce")
def woocommerce_live_state(sessions: sessionmaker[Session], settings: Settings, query: LiveQuery) -> LiveState:
    from app.models import Shop, utcnow
    from app.woocommerce.access import store_client
    from connectors.errors import ConnectorError
    from connectors.woocommerce import mapping
    from connectors.woocommerce.client import ORDER_FIELDS

    with sessions() as session:
        shop = session.get(Shop, query.shop_id)
    if shop is None or shop.status != "active" or shop.credentials is None:
        raise StoreUnreachable(f"woocommerce shop {query.shop_id} is not connected")
    try:
        client = store_client(settings, shop, quick=True)
        orders: list[StoreOrder] = []
        if query.order_platform_id:
            orders.append(client.get_order(query.order_platform_id))
        for needle in (query.email, query.phone):
            if not needle:
                continue
            params = {"search": needle, "modified_after": mapping.format_gmt(query.since), "dates_are_gmt": "true",
                      "per_page": 50, "_fields": ",".join(ORDER_FIELDS + PAYMENT_FIELDS)}
            for index, payload in enumerate(client.iter_raw("orders", params, adaptive=False)):
                if index >= 250:
                    break
                if payload.get("status") == "checkout-draft":
                    continue
                orders.append(mapping.order_from_payload(payload))
    except ConnectorError as exc:
        raise StoreUnreachable(f"woocommerce: {type(exc).__name__}: {exc}") from None
    matching = tuple(order for order in orders if order_matches(order, query))
    return LiveState(orders=matching, checked_at=utcnow())
