"""Abandoned browse: a known visitor looked at a product and then neither carted nor bought it.

The clock reads a thin time range of product views (partial index on `storefront_events.occurred_at`, an hour old)
and inserts a job per shop per batch of event ids; the job decides each view against what the visitor did
since. A customer hears about one product at most once per window (`abandoned_browse_window_days`).
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

from sqlalchemy import func, or_, select, text
from sqlalchemy.orm import Session

from app.automations.batches import enqueue_batches
from app.automations.signals import emit_signal
from app.automations.trace import record_decision
from app.clock import clock_scan, period_key
from app.jobs.registry import job_kind
from app.models import Cart, Order, Product, Shop, Signal, StorefrontEvent, StorefrontVisitor, utcnow

SCAN_ID, SCAN_EVERY = "automations.detect_abandoned_browse", 300
BROWSE_DELAY = dt.timedelta(minutes=60)
# Each scan looks back three periods, so a missed tick loses nothing; the job's checks make the overlap harmless.
LOOK_BACK = dt.timedelta(seconds=3 * SCAN_EVERY)
DEFAULT_WINDOW_DAYS = 14
ONE_A_DAY = dt.timedelta(hours=24)  # whatever else they looked at, a customer hears about one product a day
SCAN_LIMIT, BATCH = 50_000, 500


def browse_window(shop_settings: dict | None) -> dt.timedelta:
    try:
        days = int((shop_settings or {}).get("abandoned_browse_window_days", DEFAULT_WINDOW_DAYS))
    except (TypeError, ValueError):
        days = DEFAULT_WINDOW_DAYS
    return dt.timedelta(days=max(1, days))


def browse_verdict(*, has_customer: bool, product_known: bool, carted_or_bought: bool, viewed_again: bool,
                   signalled_within_window: bool) -> str:
    """no_contact | unknown_product | viewed_again | converted | already_signalled | abandoned."""
    if not has_customer:
        return "no_contact"
    if not product_known:
        return "unknown_product"
    if viewed_again:
        return "viewed_again"  # the later view is judged on its own, an hour after it
    if carted_or_bought:
        return "converted"
    if signalled_within_window:
        return "already_signalled"
    return "abandoned"


def due_views_query(now: dt.datetime, limit: int = SCAN_LIMIT):
    events = StorefrontEvent.__table__
    newest = now - BROWSE_DELAY
    # the literal (not a bound parameter) lets PostgreSQL match the partial index ix_storefront_events_product_views
    return (select(events.c.id, events.c.shop_id)
            .where(text("storefront_events.kind = 'product_view'"), events.c.occurred_at > newest - LOOK_BACK,
                   events.c.occurred_at <= newest)
            .order_by(events.c.occurred_at).limit(limit))


def enqueue_browse_checks(session: Session, now: dt.datetime, *, limit: int = SCAN_LIMIT, batch: int = BATCH) -> int:
    return enqueue_batches(session, "automations.detect_abandoned_browse", due_views_query(now, limit),
                           argument="event_ids", batch=batch, dedupe_prefix=period_key(SCAN_ID, SCAN_EVERY, now), now=now)


@clock_scan(SCAN_ID, every_seconds=SCAN_EVERY)
def scan_abandoned_browse(runtime, now: dt.datetime) -> int:
    with runtime.sessions.begin() as session:
        return enqueue_browse_checks(session, now)


def detect_abandoned_browse(session: Session, shop_id: int, event_ids: list[int], now: dt.datetime) -> dict[str, int]:
    """Signal `browse_abandoned` for each product view nobody followed up; returns how many got each verdict."""
    shop = session.get(Shop, shop_id)
    views = session.scalars(select(StorefrontEvent).where(
        StorefrontEvent.shop_id == shop_id, StorefrontEvent.id.in_(event_ids), StorefrontEvent.kind == "product_view",
        StorefrontEvent.occurred_at <= now - BROWSE_DELAY).order_by(StorefrontEvent.occurred_at)).all()
    if shop is None or shop.status != "active" or not views:
        return {}
    window = browse_window(shop.settings)
    customers = dict(session.execute(select(StorefrontVisitor.visitor_id, StorefrontVisitor.customer_id).where(
        StorefrontVisitor.shop_id == shop_id, StorefrontVisitor.visitor_id.in_({v.visitor_id for v in views}))).all())
    products = dict(session.execute(select(Product.platform_id, Product.id).where(
        Product.shop_id == shop_id, Product.platform_id.in_({v.product_platform_id for v in views}))).all())
    counts: dict[str, int] = defaultdict(int)
    for view in views:
        customer_id, product_id = customers.get(view.visitor_id), products.get(view.product_platform_id)
        later = session.scalars(select(StorefrontEvent.kind).where(
            StorefrontEvent.shop_id == shop_id, StorefrontEvent.visitor_id == view.visitor_id,
            StorefrontEvent.occurred_at >= view.occurred_at, StorefrontEvent.id != view.id,
            or_(StorefrontEvent.kind == "add_to_cart", StorefrontEvent.product_platform_id == view.product_platform_id))
        ).all()
        verdict = browse_verdict(
            has_customer=customer_id is not None, product_known=product_id is not None,
            carted_or_bought="add_to_cart" in later or (customer_id is not None and _carted_or_bought(session, shop_id, customer_id, view.occurred_at)),
            viewed_again="product_view" in later,
            signalled_within_window=customer_id is not None and product_id is not None and (
                _signalled(session, shop_id, customer_id, product_id, now - window)
                or _signalled(session, shop_id, customer_id, None, now - ONE_A_DAY)))
        counts[verdict] += 1
        if verdict != "abandoned":
            continue
        emit_signal(session, shop_id, "browse_abandoned", dedupe_key=f"browse_abandoned:{customer_id}:{product_id}:{view.id}",
                    customer_id=customer_id, subject=("product", product_id), now=now, occurred_at=now,
                    payload={"product_id": product_id, "event_id": view.id})
        record_decision(session, shop_id, "browse_abandoned", customer_id=customer_id, subject=("product", product_id),
                        now=now, gate="detection", viewed_at=view.occurred_at.isoformat())
    return dict(counts)


def _carted_or_bought(session: Session, shop_id: int, customer_id: int, since: dt.datetime) -> bool:
    cart = session.scalars(select(Cart.id).where(Cart.shop_id == shop_id, Cart.customer_id == customer_id,
                                                 Cart.last_activity_at >= since).limit(1)).first()
    if cart is not None:
        return True
    order = session.scalars(select(Order.id).where(Order.shop_id == shop_id, Order.customer_id == customer_id,
                                                   func.coalesce(Order.placed_at, Order.created_at) >= since).limit(1)).first()
    return order is not None


def _signalled(session: Session, shop_id: int, customer_id: int, product_id: int | None, since: dt.datetime) -> bool:
    """Was a browse signalled for this customer since `since` (about this product, or any when None)?"""
    query = select(Signal.id).where(Signal.shop_id == shop_id, Signal.customer_id == customer_id,
                                    Signal.occurred_at >= since, Signal.kind == "browse_abandoned")
    if product_id is not None:
        query = query.where(Signal.subject_type == "product", Signal.subject_id == product_id)
    return session.scalars(query.limit(1)).first() is not None


@job_kind("automations.detect_abandoned_browse")
def detect_abandoned_browse_job(ctx, event_ids: list[int]) -> None:
    """Signal the product views nobody followed up within the hour; safe to run twice."""
    detect_abandoned_browse(ctx.session, ctx.shop_id, event_ids, utcnow())
