"""Inactive subscribers: email consent granted, emails received, none opened or clicked and nothing bought for a while.

Once a day the clock asks for one job; it signals `subscriber_inactive` per such customer, and the
re-engagement flow tries to win them back before it sunsets them (marketing consent withdrawn by the shop).
"""
from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from app.automations.signals import emit_signal
from app.clock import clock_scan, period_key
from app.jobs.queue import enqueue
from app.jobs.registry import job_kind
from app.models import Consent, Customer, Message, Shop, utcnow

SCAN_ID, SCAN_EVERY = "automations.inactive_subscribers", 3600
ONCE_A_DAY = 86_400
DEFAULT_INACTIVE_DAYS = 90
DEFAULT_MIN_EMAILS = 3
MARKETING = ("recovery", "promotional")


def inactivity(shop_settings: dict | None) -> tuple[dt.timedelta, int]:
    """(how long without an open, click or order, how many marketing emails they must have received meanwhile)."""
    settings = shop_settings or {}
    try:
        days = max(30, int(settings.get("inactive_subscriber_days", DEFAULT_INACTIVE_DAYS)))
        emails = max(1, int(settings.get("inactive_subscriber_min_emails", DEFAULT_MIN_EMAILS)))
    except (TypeError, ValueError):
        days, emails = DEFAULT_INACTIVE_DAYS, DEFAULT_MIN_EMAILS
    return dt.timedelta(days=days), emails


def inactive_subscribers_query(shop_id: int, now: dt.datetime, period: dt.timedelta, min_emails: int):
    """Customer ids whose current email consent is a grant older than `period`, who got at least `min_emails`
    marketing emails in it, opened and clicked none, and placed no order in it."""
    cutoff = now - period
    newer = aliased(Consent)
    current_grant = select(Consent.customer_id).where(
        Consent.shop_id == shop_id, Consent.channel == "email", Consent.state == "granted", Consent.recorded_at <= cutoff,
        ~exists().where(newer.shop_id == shop_id, newer.customer_id == Consent.customer_id, newer.channel == "email",
                        or_(newer.recorded_at > Consent.recorded_at,
                            and_(newer.recorded_at == Consent.recorded_at, newer.id > Consent.id))))
    received = (select(func.count()).select_from(Message).where(
        Message.shop_id == shop_id, Message.customer_id == Customer.id, Message.channel == "email",
        Message.kind.in_(MARKETING), Message.status == "sent", Message.sent_at >= cutoff).scalar_subquery())
    engaged = exists().where(Message.shop_id == shop_id, Message.customer_id == Customer.id, Message.channel == "email",
                             or_(Message.opened_at >= cutoff, Message.clicked_at >= cutoff))
    return (select(Customer.id).where(
        Customer.shop_id == shop_id, Customer.redacted_at.is_(None), Customer.id.in_(current_grant),
        or_(Customer.last_order_at.is_(None), Customer.last_order_at < cutoff), ~engaged, received >= min_emails)
        .order_by(Customer.id))


def signal_inactive_subscribers(session: Session, shop_id: int, now: dt.datetime) -> int:
    shop = session.get(Shop, shop_id)
    if shop is None or shop.status != "active":
        return 0
    period, min_emails = inactivity(shop.settings)
    # One signal per customer per period: a customer who wakes up and falls asleep again is asked again.
    bucket = int(now.timestamp() // period.total_seconds())
    emitted = 0
    for customer_id in session.scalars(inactive_subscribers_query(shop_id, now, period, min_emails)):
        if emit_signal(session, shop_id, "subscriber_inactive", dedupe_key=f"subscriber_inactive:{customer_id}:{bucket}",
                       customer_id=customer_id, subject=("customer", customer_id), now=now, occurred_at=now,
                       payload={"customer_id": customer_id, "inactive_days": period.days}):
            emitted += 1
    return emitted


@clock_scan(SCAN_ID, every_seconds=SCAN_EVERY)
def scan_inactive_subscribers(runtime, now: dt.datetime) -> int:
    with runtime.sessions.begin() as session:
        shop_ids = session.scalars(select(Shop.id).where(Shop.status == "active")).all()
        key = period_key(SCAN_ID, ONCE_A_DAY, now)
        return sum(1 for shop_id in shop_ids if enqueue(session, "automations.signal_inactive_subscribers", shop_id=shop_id,
                                                        dedupe_key=f"{key}:{shop_id}"))


@job_kind("automations.signal_inactive_subscribers")
def signal_inactive_subscribers_job(ctx) -> None:
    """This shop's subscribers who stopped reading: a `subscriber_inactive` signal each, once per period."""
    signal_inactive_subscribers(ctx.session, ctx.shop_id, utcnow())
