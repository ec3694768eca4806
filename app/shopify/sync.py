"""Keeping the copy fresh: the initial sync through bulk operations, hourly reconciliation, webhook upkeep."""
from __future__ import annotations

import datetime as dt
import itertools
import logging
from typing import Callable, Iterable

from sqlalchemy import select, update

from app.jobs.queue import enqueue
from app.jobs.registry import job_kind
from app.models import Shop, SyncRun, utcnow
from app.shopify.access import admin_client
from app.store.apply import apply_carts, apply_customers, apply_orders, apply_products
from app.store.reauthorization import refused_credentials_stop_the_shop
from app.tenancy import shop_context
from connectors.records import StoreCart, StoreCustomer, StoreOrder, StoreProduct
from connectors.shopify import SUBSCRIPTION_TOPICS, UserErrors

log = logging.getLogger(__name__)

# Customers first, so orders and checkouts find the customer they belong to.
RESOURCES = ("customers", "products", "orders", "abandoned_checkouts")
BULK_POLL_SECONDS = 5
IMPORT_BATCH = 500
RECONCILE_OVERLAP = dt.timedelta(minutes=10)
FIRST_RECONCILE_WINDOW = dt.timedelta(days=1)

# Each kind is applied a run at a time: what its one-record function (apply_order...) does, in far fewer statements.
APPLY: dict[type, Callable] = {
    StoreCustomer: apply_customers,
    StoreProduct: apply_products,
    StoreOrder: apply_orders,
    StoreCart: apply_carts,
}


def apply_records(sessions, shop_id: int, records: Iterable, on_batch: Callable[[object, int], None] | None = None) -> int:
    """Apply records in short transactions of IMPORT_BATCH, never holding the database for a whole sync."""
    done = 0
    iterator = iter(records)
    while batch := list(itertools.islice(iterator, IMPORT_BATCH)):
        with sessions.begin() as session, shop_context(shop_id):
            for kind, run in itertools.groupby(batch, key=type):
                APPLY[kind](session, shop_id, list(run))
            done += len(batch)
            if on_batch is not None:
                on_batch(session, done)
    return done


@job_kind("shopify.start_initial_sync")
def start_initial_sync(ctx) -> None:
    """Plan one bulk import per resource; `shopify.sync_step` works through them in order."""
    in_flight = ctx.session.scalars(select(SyncRun).where(
        SyncRun.kind == "initial", SyncRun.status.in_(["pending", "running", "importing"]))).first()
    if in_flight is None:
        for resource in RESOURCES:
            ctx.session.add(SyncRun(shop_id=ctx.shop_id, kind="initial", resource=resource, status="pending"))
    enqueue(ctx.session, "shopify.sync_step", shop_id=ctx.shop_id)


@job_kind("shopify.sync_step", lease_seconds=900)
def sync_step(ctx) -> None:
    """Advance the shop's initial sync by one step: start a bulk operation, poll it, or stream its result in."""
    client = admin_client(ctx.sessions, ctx.settings, ctx.shop_id)
    with ctx.sessions() as session, shop_context(ctx.shop_id):
        run = session.scalars(select(SyncRun).where(
            SyncRun.kind == "initial", SyncRun.status.in_(["pending", "running", "importing"])).order_by(SyncRun.id)).first()
    if run is None:
        return
    with refused_credentials_stop_the_shop(ctx.sessions, ctx.shop_id):
        if run.status == "pending":
            _start(ctx, client, run)
        elif run.status == "running":
            _poll(ctx, client, run)
        elif run.importer_job_id == ctx.job_id:
            _import(ctx, client, run)  # this job was importing when its worker died: resume


def _start(ctx, client, run: SyncRun) -> None:
    operation_id = client.start_bulk_query(run.resource)
    with ctx.sessions.begin() as session, shop_context(ctx.shop_id):
        session.execute(update(SyncRun).where(SyncRun.id == run.id, SyncRun.status == "pending").values(
            status="running", remote_operation_id=operation_id, started_at=utcnow()))
    run.status, run.remote_operation_id = "running", operation_id
    _poll(ctx, client, run)  # a small shop's operation is often done already; a large one is polled later


def _poll(ctx, client, run: SyncRun) -> None:
    operation = client.bulk_operation(run.remote_operation_id)
    if operation.status in ("CREATED", "RUNNING", "CANCELING"):
        with ctx.sessions.begin() as session, shop_context(ctx.shop_id):
            session.execute(update(SyncRun).where(SyncRun.id == run.id).values(records_total=operation.object_count))
        _poll_later(ctx)
        return
    if operation.status != "COMPLETED":
        _finish(ctx, run, "failed", f"bulk operation {operation.status}: {operation.error_code or 'no error code'}")
        return
    with ctx.sessions.begin() as session, shop_context(ctx.shop_id):
        claimed = session.execute(update(SyncRun).where(SyncRun.id == run.id, SyncRun.status == "running").values(
            status="importing", importer_job_id=ctx.job_id, records_total=operation.object_count,
            result_url=operation.url)).rowcount
    if claimed:  # another step (the finish webhook and a poll raced) may already be importing it
        run.result_url = operation.url
        _import(ctx, client, run)


def _import(ctx, client, run: SyncRun) -> None:
    url = run.result_url
    if not url:  # a completed operation with no objects has no result file
        _finish(ctx, run, "done")
        return

    def progress(session, done: int) -> None:
        session.execute(update(SyncRun).where(SyncRun.id == run.id).values(records_done=done))

    done = apply_records(ctx.sessions, ctx.shop_id, client.iter_bulk_records(run.resource, url), progress)
    _finish(ctx, run, "done")
    log.info("shopify bulk import finished", extra={"resource": run.resource, "records": done})


def _finish(ctx, run: SyncRun, status: str, error: str | None = None) -> None:
    with ctx.sessions.begin() as session, shop_context(ctx.shop_id):
        session.execute(update(SyncRun).where(SyncRun.id == run.id).values(status=status, error=error, finished_at=utcnow()))
        enqueue(session, "shopify.sync_step", shop_id=ctx.shop_id)


def _poll_later(ctx) -> None:
    with ctx.sessions.begin() as session:
        enqueue(session, "shopify.sync_step", shop_id=ctx.shop_id, due_at=utcnow() + dt.timedelta(seconds=BULK_POLL_SECONDS))


RECONCILE_SOURCES = {
    "customers": "customers_updated_since",
    "products": "products_updated_since",
    "orders": "orders_updated_since",
    "abandoned_checkouts": "abandoned_checkouts_updated_since",
}


@job_kind("shopify.reconcile", lease_seconds=900)
def reconcile(ctx) -> None:
    """Fetch what changed since the last pass (with an overlap), so a dropped webhook is caught within the hour."""
    client = admin_client(ctx.sessions, ctx.settings, ctx.shop_id)
    started = utcnow()
    with ctx.sessions() as session:
        cursors = dict((session.get(Shop, ctx.shop_id).settings or {}).get("shopify_reconciled_until", {}))
    for resource, method in RECONCILE_SOURCES.items():
        since = dt.datetime.fromisoformat(cursors[resource]) - RECONCILE_OVERLAP if resource in cursors \
            else started - FIRST_RECONCILE_WINDOW
        with ctx.sessions.begin() as session, shop_context(ctx.shop_id):
            run = SyncRun(shop_id=ctx.shop_id, kind="reconcile", resource=resource, status="running",
                          updated_since=since, started_at=utcnow())
            session.add(run)
        with refused_credentials_stop_the_shop(ctx.sessions, ctx.shop_id):
            done = apply_records(ctx.sessions, ctx.shop_id, getattr(client, method)(since))
        with ctx.sessions.begin() as session, shop_context(ctx.shop_id):
            session.execute(update(SyncRun).where(SyncRun.id == run.id).values(
                status="done", records_done=done, finished_at=utcnow()))
        cursors[resource] = started.isoformat()
    with ctx.sessions.begin() as session:
        shop = session.get(Shop, ctx.shop_id)
        shop.settings = {**(shop.settings or {}), "shopify_reconciled_until": cursors}


@job_kind("shopify.register_webhooks")
def register_webhooks(ctx) -> None:
    """Make sure every topic we need is subscribed at our address; re-creates what Shopify removed."""
    client = admin_client(ctx.sessions, ctx.settings, ctx.shop_id)
    address = f"{ctx.settings.public_url}/webhooks/shopify"
    with refused_credentials_stop_the_shop(ctx.sessions, ctx.shop_id):
        existing = {(s.topic, s.uri) for s in client.webhook_subscriptions()}
    created, refused = [], {}
    for topic in SUBSCRIPTION_TOPICS:
        if (topic, address) in existing:
            continue
        try:
            with refused_credentials_stop_the_shop(ctx.sessions, ctx.shop_id):
                client.create_webhook_subscription(topic, address)
            created.append(topic)
        except UserErrors as exc:  # e.g. a topic needing protected-customer-data approval; outages are retried
            refused[topic] = str(exc)[:300]
    with ctx.sessions.begin() as session:
        shop = session.get(Shop, ctx.shop_id)
        shop.settings = {**(shop.settings or {}), "shopify_webhooks_checked_at": utcnow().isoformat(),
                         "shopify_webhook_errors": refused}
    log.info("shopify webhooks ensured", extra={"topics_created": created, "topics_refused": sorted(refused)})
