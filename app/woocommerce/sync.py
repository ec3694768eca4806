"""Keeping the copy of a WooCommerce store fresh: set-up, initial and incremental sync, drafts, webhook health.

WooCommerce webhooks are hints (never retried, coalesced, disabled after repeated failures), so every
resource is also polled with an overlapping `modified_after` cursor; the same apply path makes a webhook
and a poll of the same state a no-op the second time.
"""
from __future__ import annotations

import datetime as dt
import itertools
import logging
from typing import Callable, Iterable, Iterator

from sqlalchemy import update

from app.jobs.queue import enqueue
from app.jobs.registry import job_kind
from app.jobs.runner import PermanentJobError
from app.models import Shop, ShopAlert, SyncRun, utcnow
from app.store.apply import apply_customer, apply_product, apply_refund
from app.store.reauthorization import refused_credentials_stop_the_shop
from app.tenancy import shop_context
from app.woocommerce.access import store_client, webhook_secrets
from app.woocommerce.ingest import apply_order_payload
from connectors.errors import ConnectorError
from connectors.woocommerce import mapping
from connectors.woocommerce.client import UnsupportedTopic
from connectors.woocommerce.webhooks import ABANDONED_CART_LITE_TOPICS, SUBSCRIPTION_TOPICS, plan_webhooks

log = logging.getLogger(__name__)

RESOURCES = ("customers", "products", "orders", "refunds")
CURSOR_OVERLAP = dt.timedelta(minutes=10)
APPLY_BATCH = 200


def _shop(ctx) -> Shop | None:
    """The shop row read in a short session of its own: the job's session stays unopened during HTTP calls."""
    with ctx.sessions() as session:
        return session.get(Shop, ctx.shop_id)


def shop_and_client(ctx):
    shop = _shop(ctx)
    if shop is None or shop.platform != "woocommerce":
        raise PermanentJobError(f"shop {ctx.shop_id} is not a connected WooCommerce store")
    if shop.status != "active":
        raise PermanentJobError(f"shop {ctx.shop_id} is {shop.status}; nothing is fetched until it is reconnected")
    return shop, store_client(ctx.settings, shop)


def keys_refused_guard(ctx):
    """The store answering 401/403 means our keys were revoked: stop the shop, tell the owner, end the job."""
    return refused_credentials_stop_the_shop(ctx.sessions, ctx.shop_id)


def delivery_url(settings, shop: Shop) -> str:
    return f"{settings.public_url}/webhooks/woocommerce/{shop.webhook_token}"


@job_kind("woocommerce.setup")
def setup(ctx) -> None:
    """After a connect: check the keys, read the store's capabilities, create our webhooks, start the sync."""
    shop, client = shop_and_client(ctx)
    with keys_refused_guard(ctx):
        client.check_credentials()
        found = client.discover()
    ctx.session.execute(update(Shop).where(Shop.id == shop.id).values(
        timezone=found.timezone or shop.timezone,
        settings={**(shop.settings or {}), "woocommerce_capabilities": {
            **((shop.settings or {}).get("woocommerce_capabilities") or {}),
            "shipment_tracking": found.shipment_tracking, "advanced_shipment_tracking": found.advanced_shipment_tracking,
            "store_api": found.store_api, "abandoned_cart_plugins": list(found.abandoned_cart_namespaces)}}))
    enqueue(ctx.session, "woocommerce.check_webhooks", shop_id=ctx.shop_id)
    enqueue(ctx.session, "woocommerce.sync", shop_id=ctx.shop_id, purpose="initial")


@job_kind("woocommerce.check_webhooks")
def check_webhooks(ctx) -> None:
    """Make the store's webhooks match ours: create missing, re-enable disabled (and backfill), drop duplicates."""
    shop, client = shop_and_client(ctx)
    address = delivery_url(ctx.settings, shop)
    [secret] = webhook_secrets(shop)[:1] or [None]
    if secret is None:
        raise PermanentJobError(f"shop {ctx.shop_id} holds no webhook secret")
    with keys_refused_guard(ctx):
        plan = plan_webhooks(client.webhooks("all"), SUBSCRIPTION_TOPICS + ABANDONED_CART_LITE_TOPICS, address)
        created, unsupported = [], []
        for topic in plan.to_create:
            try:
                client.create_webhook(topic, address, secret)
                created.append(topic)
            except UnsupportedTopic:
                unsupported.append(topic)  # Abandoned Cart Lite's topics exist only with the plugin
        for hook in plan.to_enable:
            client.enable_webhook(hook.id)
        for hook in plan.to_delete:
            client.delete_webhook(hook.id)
    disabled = [hook.topic for hook in plan.to_enable if hook.status == "disabled"]
    shop = ctx.session.get(Shop, ctx.shop_id)  # the HTTP calls are done; the job's own transaction starts here
    shop.settings = {**(shop.settings or {}), "woocommerce_webhooks_checked_at": utcnow().isoformat(),
                     "woocommerce_unsupported_topics": unsupported}
    if plan.gap_suspected:
        ctx.session.add(ShopAlert(
            shop_id=ctx.shop_id, kind="woocommerce_webhooks_disabled",
            message=("WooCommerce had disabled our webhooks after failed deliveries ("
                     + ", ".join(sorted(disabled)) + "). They are re-enabled and the missed changes are being fetched."),
            details={"topics": sorted(disabled)}))
        # Deliveries were lost while the webhook was off: poll everything since the cursors (with overlap).
        enqueue(ctx.session, "woocommerce.sync", shop_id=ctx.shop_id, purpose="backfill")
    log.info("woocommerce webhooks checked", extra={"topics_created": created, "topics_reenabled": disabled,
                                                     "duplicates_removed": len(plan.to_delete)})


def _cursor(shop: Shop, resource: str) -> dt.datetime | None:
    value = ((shop.settings or {}).get("woocommerce_cursors") or {}).get(resource)
    return dt.datetime.fromisoformat(value) - CURSOR_OVERLAP if value else None


def _records(client, shop: Shop, resource: str, since, on_page) -> Iterator[tuple[Callable, object, dt.datetime | None]]:
    """(apply function, record or payload, its modification time) for every changed item of `resource`."""
    if resource == "customers":
        for record in client.customers(since, on_page=on_page):
            yield apply_customer, record, record.updated_at
    elif resource == "products":
        for record in client.products_modified_since(since, shop.currency, on_page=on_page):
            yield apply_product, record, record.updated_at
    elif resource == "orders":
        apply = _order_applier(shop)
        for payload in client.raw_orders_modified_since(since, on_page=on_page):
            yield apply, payload, mapping.parse_gmt(payload.get("date_modified_gmt"))
    elif resource == "refunds":
        for record in client.refunds_since(since, shop.currency, on_page=on_page):
            yield apply_refund, record, record.created_at


def _order_applier(shop: Shop) -> Callable:
    """Apply order bodies for this shop (read once, not once per order)."""

    def apply(session, _shop_id: int, payload: dict):
        return apply_order_payload(session, shop, payload)

    return apply


@job_kind("woocommerce.sync", lease_seconds=1800)
def sync(ctx, purpose: str = "reconcile", resources: list[str] | None = None) -> None:
    """Fetch every resource changed since its cursor (everything on the first run), in short transactions.

    Progress is written per page to the resource's sync run, so `shops sync-status` shows it while it runs.
    """
    shop, client = shop_and_client(ctx)
    for resource in resources or RESOURCES:
        since = _cursor(shop, resource)
        with ctx.sessions.begin() as session, shop_context(ctx.shop_id):
            run = SyncRun(shop_id=ctx.shop_id, kind=purpose, resource=resource, status="running", updated_since=since,
                          started_at=utcnow())
            session.add(run)
        newest = None

        def progress(page) -> None:
            if page.total_items is not None:
                with ctx.sessions.begin() as session, shop_context(ctx.shop_id):
                    session.execute(update(SyncRun).where(SyncRun.id == run.id).values(records_total=page.total_items))

        try:
            with keys_refused_guard(ctx):
                done, newest = _apply_all(ctx, run.id, _records(client, shop, resource, since, progress))
        except ConnectorError as exc:
            if resource == "refunds" and "rest_no_route" in str(exc):
                done = 0  # /refunds exists from WooCommerce 9.0; older stores get refunds through order updates
            else:
                with ctx.sessions.begin() as session, shop_context(ctx.shop_id):
                    session.execute(update(SyncRun).where(SyncRun.id == run.id).values(
                        status="failed", error=str(exc)[:1000], finished_at=utcnow()))
                raise
        with ctx.sessions.begin() as session, shop_context(ctx.shop_id):
            session.execute(update(SyncRun).where(SyncRun.id == run.id).values(
                status="done", records_done=done, finished_at=utcnow()))
            if newest is not None:
                held = session.get(Shop, ctx.shop_id)
                cursors = dict((held.settings or {}).get("woocommerce_cursors") or {})
                cursors[resource] = max(newest, dt.datetime.fromisoformat(cursors[resource])).isoformat() \
                    if resource in cursors else newest.isoformat()
                held.settings = {**(held.settings or {}), "woocommerce_cursors": cursors}
        shop = _shop(ctx)


def _apply_all(ctx, run_id: int, items: Iterable) -> tuple[int, dt.datetime | None]:
    done, newest = 0, None
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, APPLY_BATCH)):
        with ctx.sessions.begin() as session, shop_context(ctx.shop_id):
            for apply, record, modified in batch:
                apply(session, ctx.shop_id, record)
                if modified is not None and (newest is None or modified > newest):
                    newest = modified
            done += len(batch)
            session.execute(update(SyncRun).where(SyncRun.id == run_id).values(records_done=done))
    return done, newest


@job_kind("woocommerce.poll_checkout_drafts")
def poll_checkout_drafts(ctx) -> None:
    """Block-checkout drafts are the carts WooCommerce core holds; no webhook tells of most of them."""
    shop, client = shop_and_client(ctx)
    since = _cursor(shop, "checkout_drafts")
    run_id = _draft_run(ctx, since)
    with keys_refused_guard(ctx):
        apply = _order_applier(shop)
        done, newest = _apply_all(ctx, run_id, (
            (apply, payload, mapping.parse_gmt(payload.get("date_modified_gmt")))
            for payload in client.raw_orders_modified_since(since, statuses=("checkout-draft",))))
    with ctx.sessions.begin() as session, shop_context(ctx.shop_id):
        session.execute(update(SyncRun).where(SyncRun.id == run_id).values(status="done", finished_at=utcnow()))
        held = session.get(Shop, ctx.shop_id)
        if newest is not None:
            cursors = dict((held.settings or {}).get("woocommerce_cursors") or {})
            cursors["checkout_drafts"] = newest.isoformat()
            held.settings = {**(held.settings or {}), "woocommerce_cursors": cursors}
    log.info("woocommerce checkout drafts polled", extra={"drafts": done})


def _draft_run(ctx, since) -> int:
    with ctx.sessions.begin() as session, shop_context(ctx.shop_id):
        run = SyncRun(shop_id=ctx.shop_id, kind="reconcile", resource="checkout_drafts", status="running",
                      updated_since=since, started_at=utcnow())
        session.add(run)
        session.flush()
        return run.id


@job_kind("woocommerce.fetch_refunds")
def fetch_refunds(ctx, order_platform_id: str) -> None:
    """An order listed refunds: read them with their dates and amounts and apply each."""
    shop, client = shop_and_client(ctx)
    with keys_refused_guard(ctx):
        refunds = client.order_refunds(order_platform_id, shop.currency)
    for refund in refunds:
        apply_refund(ctx.session, ctx.shop_id, refund)
