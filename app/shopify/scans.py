"""The clock's Shopify scans: hourly reconciliation and a daily check of webhook subscriptions per shop."""
from __future__ import annotations

from sqlalchemy import select

from app.clock import clock_scan, period_key
from app.jobs.queue import enqueue
from app.models import Shop


def _enqueue_per_active_shop(runtime, now, kind: str, every_seconds: int) -> int:
    inserted = 0
    with runtime.sessions.begin() as session:
        shop_ids = session.scalars(select(Shop.id).where(Shop.platform == "shopify", Shop.status == "active")).all()
        for shop_id in shop_ids:
            if enqueue(session, kind, shop_id=shop_id, dedupe_key=f"{period_key(kind, every_seconds, now)}:{shop_id}"):
                inserted += 1
    return inserted


@clock_scan("shopify.reconcile", every_seconds=3600)
def schedule_reconciliation(runtime, now) -> int:
    return _enqueue_per_active_shop(runtime, now, "shopify.reconcile", 3600)


@clock_scan("shopify.ensure_webhooks", every_seconds=86400)
def schedule_webhook_check(runtime, now) -> int:
    return _enqueue_per_active_shop(runtime, now, "shopify.register_webhooks", 86400)
