"""Abandoned carts: the clock finds carts idle past their shop's threshold; a job decides each one.

The scan only reads an index range (`status, last_activity_at`) and inserts a job per batch of cart ids,
so its cost follows the carts that are due, not the size of the table. The job re-checks every cart,
so a second clock, a re-run or a late job changes nothing twice.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import BigInteger, case, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.automations.batches import enqueue_batches
from app.automations.signals import SignalFact, emit_signals
from app.automations.trace import decision_row, record_decisions
from app.clock import clock_scan, period_key
from app.jobs.registry import job_kind
from app.models import Cart, CartLine, Customer, Order, Shop, utcnow

SCAN_ID = "automations.detect_abandoned_carts"
SCAN_EVERY = 60
DEFAULT_ABANDON_MINUTES = 60
MIN_ABANDON_MINUTES = 10
SCAN_LIMIT = 50_000
BATCH = 500
US = "companion"


def abandon_after(shop_settings: dict | None) -> dt.timedelta:
    """The shop's idle threshold (`abandoned_cart_minutes`, default 60, never under 10)."""
    try:
        minutes = int((shop_settings or {}).get("abandoned_cart_minutes", DEFAULT_ABANDON_MINUTES))
    except (TypeError, ValueError):
        minutes = DEFAULT_ABANDON_MINUTES
    return dt.timedelta(minutes=max(MIN_ABANDON_MINUTES, minutes))


def other_sender(shop_settings: dict | None) -> str | None:
    """Another abandoned-cart sender the shop runs that owns reminders, unless the owner chose us.

    `abandoned_cart_senders` lists what the connectors detected (e.g. "shopify_native", "woocommerce_core",
    "cartflows"); `abandoned_cart_owner` = "companion" means the owner picked us over them.
    """
    settings = shop_settings or {}
    if settings.get("abandoned_cart_owner") == US:
        return None
    senders = [s for s in settings.get("abandoned_cart_senders") or [] if s != US]
    woocommerce = settings.get("woocommerce_capabilities") or {}  # what the WooCommerce connect check found
    if woocommerce.get("own_abandoned_cart_email"):
        senders.append("woocommerce_core")
    senders += [f"plugin:{namespace}" for namespace in woocommerce.get("abandoned_cart_plugins") or []]
    return senders[0] if senders else None


@dataclass(frozen=True)
class CartFacts:
    last_activity_at: dt.datetime
    has_contact: bool
    has_lines: bool
    converting_order_id: int | None
    shop_active: bool
    other_sender: str | None


def abandonment_verdict(cart: CartFacts, now: dt.datetime, threshold: dt.timedelta) -> str:
    """not_due | converted | shop_inactive | empty | no_contact | other_sender | abandoned."""
    if now - cart.last_activity_at < threshold:
        return "not_due"
    if cart.converting_order_id is not None:
        return "converted"
    if not cart.shop_active:
        return "shop_inactive"
    if not cart.has_lines:
        return "empty"
    if not cart.has_contact:
        return "no_contact"
    if cart.other_sender:
        return "other_sender"
    return "abandoned"


# --- the clock's part: find due carts, insert jobs -------------------------------------------------------

def _threshold_groups(session: Session) -> dict[dt.timedelta, list[int]]:
    """Shops whose threshold differs from the default, grouped by threshold (usually none)."""
    groups: dict[dt.timedelta, list[int]] = defaultdict(list)
    custom = Shop.__table__.c.settings["abandoned_cart_minutes"].as_string()
    for shop_id, shop_settings in session.connection().execute(
            select(Shop.__table__.c.id, Shop.__table__.c.settings).where(custom.is_not(None))):
        threshold = abandon_after(shop_settings)
        if threshold != dt.timedelta(minutes=DEFAULT_ABANDON_MINUTES):
            groups[threshold].append(shop_id)
    return groups


def due_cart_query(cutoff: dt.datetime, limit: int, only_shops: list[int] | None = None,
                   except_shops: list[int] | None = None):
    """Active carts idle since before `cutoff`, oldest first: a range of ix_carts_status_last_activity."""
    carts = Cart.__table__
    query = (select(carts.c.id, carts.c.shop_id).where(carts.c.status == "active", carts.c.last_activity_at <= cutoff)
             .order_by(carts.c.last_activity_at).limit(limit))
    if only_shops is not None:
        query = query.where(carts.c.shop_id.in_(only_shops))
    if except_shops:
        query = query.where(carts.c.shop_id.not_in(except_shops))
    return query


def enqueue_abandoned_cart_checks(session: Session, now: dt.datetime, *, limit: int = SCAN_LIMIT,
                                  batch: int = BATCH) -> int:
    """Insert one `automations.detect_abandoned` job per shop per batch of due carts; returns jobs inserted."""
    groups = _threshold_groups(session)
    custom = [s for ids in groups.values() for s in ids]
    period = period_key(SCAN_ID, SCAN_EVERY, now)
    inserted = enqueue_batches(session, "automations.detect_abandoned",
                               due_cart_query(now - dt.timedelta(minutes=DEFAULT_ABANDON_MINUTES), limit, except_shops=custom),
                               argument="cart_ids", batch=batch, dedupe_prefix=period, now=now)
    for threshold, shop_ids in groups.items():
        inserted += enqueue_batches(session, "automations.detect_abandoned", due_cart_query(now - threshold, limit, only_shops=shop_ids),
                                    argument="cart_ids", batch=batch, dedupe_prefix=period, now=now)
    return inserted


@clock_scan(SCAN_ID, every_seconds=SCAN_EVERY)
def scan_abandoned_carts(runtime, now: dt.datetime) -> int:
    with runtime.sessions.begin() as session:
        return enqueue_abandoned_cart_checks(session, now)


# --- the worker's part: decide each cart -----------------------------------------------------------------

def _converting_orders(session: Session, shop_id: int, carts: list[Cart]) -> dict[int, int]:
    """cart id -> an order that bought it: same cart/checkout token, or same email or phone since the cart began."""
    tokens = {c.platform_token for c in carts}
    emails = {c.email for c in carts if c.email}
    phones = {c.phone for c in carts if c.phone}
    conditions = [Order.cart_token.in_(tokens), Order.checkout_token.in_(tokens)]
    if emails:
        conditions.append(Order.email.in_(emails))
    if phones:
        conditions.append(Order.phone.in_(phones))
    orders = session.execute(
        select(Order.id, Order.cart_token, Order.checkout_token, Order.email, Order.phone, Order.placed_at, Order.created_at)
        .where(Order.shop_id == shop_id, or_(*conditions), Order.cancelled_at.is_(None))).all()
    found: dict[int, int] = {}
    for cart in carts:
        began = min(cart.created_at, cart.last_activity_at)
        for order in orders:
            if cart.platform_token in (order.cart_token, order.checkout_token):
                found[cart.id] = order.id
                break
            placed = order.placed_at or order.created_at
            same_person = (cart.email and order.email == cart.email) or (cart.phone and order.phone == cart.phone)
            if same_person and placed is not None and placed >= began:
                found[cart.id] = order.id
                break
    return found


def customer_for_contact(session: Session, shop_id: int, customer_id: int | None, email: str | None,
                         phone: str | None) -> Customer | None:
    """The customer a cart or order belongs to: the one it names, one with its email or phone, or a new guest record."""
    if customer_id is not None:
        customer = session.get(Customer, customer_id)
        if customer is not None:
            return customer
    for column, value in ((Customer.email, email), (Customer.phone, phone)):
        if value:
            customer = session.scalars(select(Customer).where(Customer.shop_id == shop_id, column == value)
                                       .order_by(Customer.id).limit(1)).first()
            if customer is not None:
                return customer
    if not (email or phone):
        return None
    customer = Customer(shop_id=shop_id, platform_id=None, email=email, phone=phone)
    session.add(customer)
    session.flush()
    return customer


def customer_for_cart(session: Session, shop_id: int, cart: Cart) -> Customer:
    customer = customer_for_contact(session, shop_id, cart.customer_id, cart.email, cart.phone)
    cart.customer_id = customer.id
    return customer


def customers_for_carts(session: Session, shop_id: int, carts: list[Cart]) -> dict[int, Customer]:
    """`customer_for_cart` for many carts at once: cart id -> customer (found by id, email or phone, else a new guest).

    Three reads and one multi-row insert, however many carts; two carts with the same address share a guest.
    The carts are not changed: the caller writes `customer_id` (detection does it with one UPDATE).
    """
    named = {c.customer_id for c in carts if c.customer_id is not None}
    emails = {c.email for c in carts if c.email}
    phones = {c.phone for c in carts if c.phone}
    by_id = {c.id: c for c in session.scalars(select(Customer).where(Customer.shop_id == shop_id,
                                                                       Customer.id.in_(named)))} if named else {}
    by_email: dict[str, Customer] = {}
    by_phone: dict[str, Customer] = {}
    for column, values, found in ((Customer.email, emails, by_email), (Customer.phone, phones, by_phone)):
        if values:  # the oldest customer with the address, as customer_for_contact picks
            for customer in session.scalars(select(Customer).where(Customer.shop_id == shop_id, column.in_(values))
                                            .order_by(Customer.id)):
                found.setdefault(getattr(customer, column.key), customer)
    chosen: dict[int, Customer] = {}
    for cart in carts:
        customer = by_id.get(cart.customer_id) or (by_email.get(cart.email) if cart.email else None) \
            or (by_phone.get(cart.phone) if cart.phone else None)
        if customer is None:
            customer = Customer(shop_id=shop_id, platform_id=None, email=cart.email, phone=cart.phone)
            session.add(customer)
            if cart.email:
                by_email[cart.email] = customer
            if cart.phone:
                by_phone.setdefault(cart.phone, customer)
        chosen[cart.id] = customer
    session.flush()  # the new guests, in one statement
    return chosen


def detect_abandoned_carts(session: Session, shop_id: int, cart_ids: list[int], now: dt.datetime) -> dict[str, int]:
    """Decide each still-active cart; returns how many got each verdict."""
    shop = session.get(Shop, shop_id)
    query = select(Cart).where(Cart.shop_id == shop_id, Cart.id.in_(cart_ids), Cart.status == "active").order_by(Cart.id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    carts = list(session.scalars(query))
    if not carts or shop is None:
        return {}
    with_lines = set(session.scalars(select(CartLine.cart_id).where(CartLine.shop_id == shop_id,
                                                                    CartLine.cart_id.in_([c.id for c in carts]))))
    converting = _converting_orders(session, shop_id, carts)
    threshold, sender = abandon_after(shop.settings), other_sender(shop.settings)
    counts: dict[str, int] = defaultdict(int)
    verdicts = {}
    for cart in carts:
        facts = CartFacts(cart.last_activity_at, bool(cart.email or cart.phone), cart.id in with_lines or cart.total > 0,
                          converting.get(cart.id), shop.status == "active", sender)
        verdicts[cart.id] = (facts, abandonment_verdict(facts, now, threshold))
    customers = customers_for_carts(session, shop_id, [c for c in carts if verdicts[c.id][1] == "abandoned"])
    abandoned_signals, decisions = [], []
    for cart in carts:
        facts, verdict = verdicts[cart.id]
        counts[verdict] += 1
        if verdict == "not_due":
            continue
        subject = ("cart", cart.id)
        if verdict == "converted":
            cart.status, cart.recovered_order_id = "converted", facts.converting_order_id
            decisions.append(decision_row(shop_id, "cart_converted", customer_id=cart.customer_id, subject=subject, now=now,
                                          order_id=facts.converting_order_id, gate="detection"))
            continue
        if verdict != "abandoned":
            cart.status = "idle"
            decisions.append(decision_row(shop_id, f"cart_idle_{verdict}", customer_id=cart.customer_id, subject=subject,
                                          now=now, gate="detection", sender=sender))
            continue
        customer = customers[cart.id]
        abandoned_signals.append(SignalFact(  # occurred now: written in one statement below
            shop_id, "cart_abandoned", dedupe_key=f"cart_abandoned:{cart.id}:{int(cart.last_activity_at.timestamp())}",
            customer_id=customer.id, subject=subject,
            payload={"cart_id": cart.id, "total": cart.total, "currency": cart.currency,
                     "version": int(cart.last_activity_at.timestamp())}))
        decisions.append(decision_row(shop_id, "cart_abandoned", customer_id=customer.id, subject=subject, now=now,
                                      gate="detection", idle_minutes=int((now - cart.last_activity_at).total_seconds() // 60)))
    _mark_abandoned(session, shop_id, {cart_id: customer.id for cart_id, customer in customers.items()}, now)
    emit_signals(session, abandoned_signals, now=now)
    record_decisions(session, decisions)
    return dict(counts)


def _mark_abandoned(session: Session, shop_id: int, owners: dict[int, int], now: dt.datetime) -> None:
    """status `abandoned` and the customer, for all these carts in one UPDATE (not one statement per cart)."""
    if not owners:
        return
    carts = Cart.__table__
    if session.get_bind().dialect.name == "postgresql":  # two array parameters, not a CASE of 2 x 500
        pairs = select(func.unnest(literal(list(owners), ARRAY(BigInteger))).label("cart_id"),
                       func.unnest(literal(list(owners.values()), ARRAY(BigInteger))).label("customer_id")).subquery()
        statement = update(carts).where(carts.c.shop_id == shop_id, carts.c.id == pairs.c.cart_id).values(
            status="abandoned", abandoned_at=now, customer_id=pairs.c.customer_id)
    else:
        statement = update(carts).where(carts.c.shop_id == shop_id, carts.c.id.in_(owners)).values(
            status="abandoned", abandoned_at=now, customer_id=case(owners, value=carts.c.id))
    session.execute(statement.execution_options(synchronize_session=False))
    for cart_id, customer_id in owners.items():  # the loaded rows learn what was written, without writing again
        cart = session.get(Cart, cart_id)
        if cart is not None:
            for key, value in (("status", "abandoned"), ("abandoned_at", now), ("customer_id", customer_id)):
                set_committed_value(cart, key, value)


@job_kind("automations.detect_abandoned")
def detect_abandoned(ctx, cart_ids: list[int]) -> None:
    """Mark the given carts abandoned (and signal it) or set them aside; safe to run twice."""
    detect_abandoned_carts(ctx.session, ctx.shop_id, cart_ids, utcnow())
