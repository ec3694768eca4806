"""The clock's WooCommerce scans: hourly reconciliation and webhook health, checkout drafts every ten minutes."""
from __future__ import annotations

from sqlalchemy import select

from app.clock import clock_scan, period_key
from app.jobs.queue import enqueue
from app.models import Shop


def _enqueue_per_active_store(runtime, now, scan: str, kind: str, every_seconds: int, **args) -> int:
    inserted = 0
    with runtime.sessions.begin() as session:
        shop_ids = session.scalars(select(Shop.id).where(Shop.platform == "woocommerce", Shop.status == "active")).all()
        for shop_id in shop_ids:
            if enqueue(session, kind, shop_id=shop_id, dedupe_key=f"{period_key(scan, every_seconds, now)}:{shop_id}", **args):
                inserted += 1
    return inserted


@clock_scan("woocommerce.reconcile", every_seconds=3600)
def schedule_reconciliation(runtime, now) -> int:
    return _enqueue_per_active_store(runtime, now, "woocommerce.reconcile", "woocommerce.sync", 3600, purpose="reconcile")


@clock_scan("woocommerce.check_webhooks", every_seconds=3600)
def schedule_webhook_check(runtime, now) -> int:
    return _enqueue_per_active_store(runtime, now, "woocommerce.check_webhooks", "woocommerce.check_webhooks", 3600)


@clock_scan("woocommerce.checkout_drafts", every_seconds=600)
def schedule_draft_polls(runtime, now) -> int:
    return _enqueue_per_active_store(runtime, now, "woocommerce.checkout_drafts", "woocommerce.poll_checkout_drafts", 600)
