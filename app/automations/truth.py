"""Send-time truth: re-read the live store before a recovery message, through one function per platform.

A check answers what the store says *now* about a cart or an order: orders placed since the cart was
last touched that match its token, email or phone, whether the checkout completed, whether an order is paid,
and for an order the link the store gives for paying it (`StoreOrder.payment_url`).
When the store cannot be asked, the check raises StoreUnreachable and the caller postpones; it never guesses.

Many runs of one shop due at once share one read (`LiveReads`): the store's orders changed since the earliest
`since` among them, read once in pages (a platform's registered window read), and each run's LiveQuery answered
from that with the same matching rules. A window wider than a bound, or a read that fails, falls back to one
read per run; nothing is ever assumed bought or not bought without the store having answered.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from connectors.records import StoreOrder

log = logging.getLogger(__name__)


class StoreUnreachable(Exception):
    """The store could not be asked (down, throttled, token revoked); try again later."""


class WindowTooWide(Exception):
    """More changed orders since the window's start than a shared read may page through; ask run by run."""


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


def _registrar(table: dict[str, Callable], platform: str) -> Callable[[Callable], Callable]:
    def register(func: Callable) -> Callable:
        table[platform] = func
        return func

    return register


def register_truth_check(platform: str) -> Callable[[TruthCheck], TruthCheck]:
    """Register `check(sessions, settings, query) -> LiveState` as the live re-read for `platform`."""
    return _registrar(_checks, platform)


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


# --- one read for many runs ------------------------------------------------------------------------------

WINDOW_PAGES = 20  # pages a shared read may take; a wider window is read run by run (never more pages than runs)
WINDOW_MIN_RUNS = 2  # a lone run keeps its own read
WINDOW_FRESH_SECONDS = 60.0  # a shared read older than this is taken again for the runs still waiting


def _to_second(moment: dt.datetime) -> dt.datetime:
    """Store search filters work to the second (`updated_at:>=…`, `modified_after`)."""
    return moment.astimezone(dt.timezone.utc).replace(microsecond=0)


@dataclass(frozen=True)
class StoreWindow:
    """What one shop's store held when read: every order changed since `since`, and the checkouts completed since."""
    shop_id: int
    since: dt.datetime
    orders: tuple[StoreOrder, ...] = ()
    completed_checkouts: tuple[tuple[str, dt.datetime], ...] = ()  # (token, updated at)
    checked_at: dt.datetime | None = None
    partial: frozenset[str] = frozenset()
    _index: dict[tuple[str, str], list[int]] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        for position, order in enumerate(self.orders):  # who could match an order: its id, tokens, email, phone
            keys = [("id", order.platform_id), ("token", order.cart_token), ("token", order.checkout_token),
                    ("email", (order.email or "").lower()), ("phone", order.phone)]
            for key in {key for key in keys if key[1]}:
                self._index.setdefault(key, []).append(position)

    def answer(self, query: LiveQuery) -> LiveState:
        """The LiveState a read of the store for `query` alone would have given, from the shared read."""
        floor = _to_second(query.since)
        keys = [("id", query.order_platform_id), ("email", (query.email or "").lower()), ("phone", query.phone)]
        keys += [("token", token) for token in query.tokens]
        positions = sorted({p for key in keys if key[1] for p in self._index.get(key, ())})  # in the store's order
        orders = tuple(order for order in (self.orders[p] for p in positions)
                       if (order.platform_id == query.order_platform_id or order.updated_at >= floor)
                       and order_matches(order, query))
        completed = any(token in query.tokens and at >= floor for token, at in self.completed_checkouts)
        return LiveState(orders=orders, checkout_completed=completed, checked_at=self.checked_at,
                         partial=frozenset(o.platform_id for o in orders if o.platform_id in self.partial))


# read(sessions, settings, queries, max_pages) -> StoreWindow; WindowTooWide past max_pages, StoreUnreachable on failure
WindowRead = Callable[[sessionmaker[Session], Settings, Sequence[LiveQuery], int], StoreWindow]
_window_reads: dict[str, WindowRead] = {}


def register_window_read(platform: str) -> Callable[[WindowRead], WindowRead]:
    """Register the shared read of `platform`: its orders changed since the earliest `since` of the queries."""
    return _registrar(_window_reads, platform)


class LiveReads:
    """The live state of each run of a batch (one shop), asked group by group just before each group runs.

    With several runs to check and a window read for the platform, the store is read once for all the runs still
    waiting and each run is answered from that read; the read is taken again when it is older than
    WINDOW_FRESH_SECONDS. A window wider than WINDOW_PAGES (or than the number of runs) or a shared read that
    fails falls back to one read per run, and then the first run the store does not answer postpones the rest
    of the batch with it: a store that has just failed is not asked once more per run.
    """

    def __init__(self, sessions: sessionmaker[Session], settings: Settings, queries: dict[int, LiveQuery | None], *,
                 clock: Callable[[], float] = time.monotonic):
        self.sessions, self.settings, self.clock = sessions, settings, clock
        self.queries = {run_id: query for run_id, query in queries.items() if query is not None}
        self.waiting = list(self.queries)
        kinds = {(query.shop_id, query.platform) for query in self.queries.values()}
        self.shared = (len(self.queries) >= WINDOW_MIN_RUNS and len(kinds) == 1
                       and next(iter(kinds))[1] in _window_reads)
        self.window: StoreWindow | None = None
        self.window_runs: set[int] = set()
        self.window_read_at = 0.0
        self.stop_at_first_failure = False
        self.failure: StoreUnreachable | None = None

    def states(self, run_ids: Iterable[int]) -> dict[int, LiveState | StoreUnreachable]:
        wanted = [run_id for run_id in run_ids if run_id in self.queries]
        if not wanted:
            return {}
        if self.shared and (self.window is None or not set(wanted) <= self.window_runs
                            or self.clock() - self.window_read_at > WINDOW_FRESH_SECONDS):
            again = list(dict.fromkeys(wanted + self.waiting))
            if len(again) < WINDOW_MIN_RUNS:  # the last run of a long batch: its own read, as a lone run
                self.shared, self.window = False, None
            else:
                self._read_window(again)
        if self.shared and self.window is not None:
            found: dict[int, LiveState | StoreUnreachable] = {
                run_id: self.window.answer(self.queries[run_id]) for run_id in wanted}
        else:
            found = self._each(wanted)
        done = set(wanted)
        self.waiting = [run_id for run_id in self.waiting if run_id not in done]
        return found

    def _read_window(self, run_ids: list[int]) -> None:
        asked = [self.queries[run_id] for run_id in run_ids]
        platform = asked[0].platform
        try:
            started = self.clock()
            self.window = _window_reads[platform](self.sessions, self.settings, asked, min(WINDOW_PAGES, len(asked)))
            self.window_runs, self.window_read_at = set(run_ids), started
            return
        except WindowTooWide as exc:
            log.info("live store window too wide to share; reading run by run",
                     extra={"shop_id": asked[0].shop_id, "runs": len(asked), "reason": str(exc)[:200]})
        except StoreUnreachable as exc:
            log.warning("shared live store read failed; reading run by run",
                        extra={"shop_id": asked[0].shop_id, "runs": len(asked), "error": str(exc)[:300]})
        except Exception:  # a fault in the shared read must not hold back reminders the per-run read can check
            log.exception("shared live store read broke; reading run by run",
                          extra={"shop_id": asked[0].shop_id, "runs": len(asked)})
        self.shared, self.window, self.stop_at_first_failure = False, None, True

    def _each(self, run_ids: list[int]) -> dict[int, LiveState | StoreUnreachable]:
        found: dict[int, LiveState | StoreUnreachable] = {}
        for run_id in run_ids:
            if self.failure is not None:
                found[run_id] = self.failure
                continue
            try:
                found[run_id] = read_live_state(self.sessions, self.settings, self.queries[run_id])
            except StoreUnreachable as exc:
                found[run_id] = exc
                if self.stop_at_first_failure:
                    self.failure = exc
        return found


# --- Shopify -------------------------------------------------------------------------------------------

_SHOPIFY_PAGES = 5


@register_truth_check("shopify")
def shopify_live_state(sessions: sessionmaker[Session], settings: Settings, query: LiveQuery) -> LiveState:
    from app.jobs.runner import PermanentJobError
    from app.models import utcnow
    from app.shopify.access import admin_client
    from connectors.errors import ConnectorError
    from connectors.shopify import queries

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
        nodes, cut_short = client.nodes_of(order_query, "orders", {"first": 25, "query": search, "lines": 20},
                                           max_pages=_SHOPIFY_PAGES)
        orders, partial = _orders_of(nodes)
        completed = False
        if query.tokens:
            checkouts = client.abandoned_checkouts_updated_since(query.since, page_size=50)
            completed = any(cart.token in query.tokens and cart.completed_at is not None for cart in checkouts)
    except (ConnectorError, PermanentJobError) as exc:
        raise StoreUnreachable(f"shopify: {type(exc).__name__}: {exc}") from None
    matching = tuple(order for order in orders if order_matches(order, query))
    decided = (purchase_since(LiveState(orders=matching), query) is not None
               or any(order.platform_id == query.order_platform_id for order in matching))
    if cut_short and who and not completed and not decided:
        # The purchase may be in a page not read (the customer's older orders were all edited since, say): the
        # store's answer is not known, so the step waits as for an outage, rather than assume "not bought". Without
        # a contact, the orders read is the whole shop's and the checkouts read above is what tells.
        raise StoreUnreachable(f"shopify: more than {_SHOPIFY_PAGES * 25} orders of this customer were updated since "
                               f"{since}; the purchase cannot be ruled out")
    return LiveState(orders=matching, checkout_completed=completed, checked_at=utcnow(), partial=frozenset(partial))


def _orders_of(nodes: list[dict]) -> tuple[list[StoreOrder], set[str]]:
    """Orders from GraphQL order nodes, and the ids of those whose lines did not all come (decide, do not store)."""
    from connectors.shopify import mapping

    orders = [mapping.order_from_node(node) for node in nodes]
    partial = {order.platform_id for order, node in zip(orders, nodes)
               if ((node.get("lineItems") or {}).get("pageInfo") or {}).get("hasNextPage")}
    return orders, partial


# Enough lines per order to store most orders whole within the page's cost budget (800 points): more are "partial".
_WINDOW_ORDERS_PAGE, _WINDOW_ORDER_LINES = 50, 13
_WINDOW_CHECKOUTS_PAGE = 250
_CHECKOUT_STATE_FIELDS = "id abandonedCheckoutUrl createdAt updatedAt completedAt"  # a point per checkout


@register_window_read("shopify")
def shopify_store_window(sessions: sessionmaker[Session], settings: Settings, asked: Sequence[LiveQuery],
                         max_pages: int) -> StoreWindow:
    """Orders updated since the earliest `since` (oldest change first), and abandoned checkouts updated since then
    when a query carries cart tokens; each at most `max_pages` pages."""
    from app.jobs.runner import PermanentJobError
    from app.models import utcnow
    from app.shopify.access import admin_client
    from connectors.errors import ConnectorError
    from connectors.shopify import mapping, queries

    shop_id, since = asked[0].shop_id, min(query.since for query in asked)
    search = f"updated_at:>='{_to_second(since).strftime('%Y-%m-%dT%H:%M:%SZ')}'"
    try:
        client = admin_client(sessions, settings, shop_id, quick=True)
        fields = queries.order_fields(client.api_version)
        if any(query.order_platform_id for query in asked):  # a message about an order may carry its payment link
            fields = f"{fields} {queries.ORDER_PAYMENT_FIELDS}"
        order_query = queries.updated_since_query("OrdersUpdatedSince", "orders", fields, sort_key="UPDATED_AT",
                                                  lines=("lineItems", queries.ORDER_LINE_FIELDS))
        nodes, more = client.nodes_of(order_query, "orders", {"first": _WINDOW_ORDERS_PAGE, "query": search,
                                                              "lines": _WINDOW_ORDER_LINES}, max_pages=max_pages)
        if more:
            raise WindowTooWide(f"more than {max_pages} pages of orders updated since {since.isoformat()}")
        orders_read, partial = _orders_of(nodes)
        orders = {order.platform_id: order for order in orders_read}
        completed: list[tuple[str, dt.datetime]] = []
        if any(query.tokens for query in asked):
            checkout_query = queries.updated_since_query("AbandonedCheckoutsUpdatedSince", "abandonedCheckouts",
                                                         _CHECKOUT_STATE_FIELDS, sort_key="ID")
            nodes, more = client.nodes_of(checkout_query, "abandonedCheckouts",
                                          {"first": _WINDOW_CHECKOUTS_PAGE, "query": search}, max_pages=max_pages)
            if more:
                raise WindowTooWide(f"more than {max_pages} pages of checkouts updated since {since.isoformat()}")
            for node in nodes:
                if node.get("completedAt"):
                    token = mapping.checkout_token_from_url(node.get("abandonedCheckoutUrl")) or \
                        mapping.gid_tail(node.get("id"))
                    at = mapping.parse_time(node.get("updatedAt")) or mapping.parse_time(node.get("createdAt"))
                    if token and at:
                        completed.append((token, at))
    except (ConnectorError, PermanentJobError) as exc:
        raise StoreUnreachable(f"shopify: {type(exc).__name__}: {exc}") from None
    return StoreWindow(shop_id, since, tuple(orders.values()), tuple(completed), checked_at=utcnow(),
                       partial=frozenset(partial))


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


_WINDOW_WOO_PAGE = 100  # WooCommerce's largest page


@register_window_read("woocommerce")
def woocommerce_store_window(sessions: sessionmaker[Session], settings: Settings, asked: Sequence[LiveQuery],
                             max_pages: int) -> StoreWindow:
    """Orders modified since the earliest `since`, at most `max_pages` pages of 100 (told by the first page)."""
    from app.models import Shop, utcnow
    from app.woocommerce.access import store_client
    from connectors.errors import ConnectorError
    from connectors.woocommerce import mapping
    from connectors.woocommerce.client import ORDER_FIELDS, PageProgress

    shop_id, since = asked[0].shop_id, min(query.since for query in asked)
    subjects = {query.order_platform_id for query in asked if query.order_platform_id}
    with sessions() as session:
        shop = session.get(Shop, shop_id)
    if shop is None or shop.status != "active" or shop.credentials is None:
        raise StoreUnreachable(f"woocommerce shop {shop_id} is not connected")

    def bounded(progress: PageProgress) -> None:
        if progress.total_pages is not None and progress.total_pages > max_pages:
            raise WindowTooWide(f"{progress.total_items} orders modified since {since.isoformat()}")

    try:
        client = store_client(settings, shop, quick=True)
        params = {"modified_after": mapping.format_gmt(since), "dates_are_gmt": "true", "per_page": _WINDOW_WOO_PAGE,
                  "_fields": ",".join(ORDER_FIELDS + PAYMENT_FIELDS)}
        orders: dict[str, StoreOrder] = {}
        for index, payload in enumerate(client.iter_raw("orders", params, adaptive=False, on_page=bounded)):
            if index >= max_pages * _WINDOW_WOO_PAGE:  # no page count told (a proxy ate the headers)
                raise WindowTooWide(f"more than {max_pages} pages of orders modified since {since.isoformat()}")
            if payload.get("status") == "checkout-draft" and str(payload.get("id")) not in subjects:
                continue
            order = mapping.order_from_payload(payload)
            orders[order.platform_id] = order  # an order that moved between pages is read twice: keep one
    except ConnectorError as exc:
        raise StoreUnreachable(f"woocommerce: {type(exc).__name__}: {exc}") from None
    return StoreWindow(shop_id, since, tuple(orders.values()), checked_at=utcnow())
