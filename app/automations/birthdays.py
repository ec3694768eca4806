"""Birthdays: once a year, in the morning of the customer's own time zone (the shop's when unknown), a signal.

The scan looks up exact dates through an index on `customers.birthday` (the same month and day in every
plausible year), so its cost follows the customers whose birthday is near, not the size of the table.
"""
from __future__ import annotations

import calendar
import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.automations.signals import emit_signal
from app.automations.timing import zone
from app.clock import clock_scan, period_key
from app.jobs.queue import enqueue
from app.jobs.registry import job_kind
from app.models import Customer, Shop, utcnow

SCAN_ID, SCAN_EVERY = "automations.birthdays", 3600
MORNING = dt.time(9, 0)
OLDEST_YEAR = 1900


def celebrated_on(birthday: dt.date, year: int) -> dt.date:
    """The day a birthday falls on in `year`: 29 February is celebrated on the 28th in common years."""
    if birthday.month == 2 and birthday.day == 29 and not calendar.isleap(year):
        return dt.date(year, 2, 28)
    return birthday.replace(year=year)


def is_birthday_morning(birthday: dt.date, now: dt.datetime, timezone: str | None) -> bool:
    """Is it the customer's birthday, from 09:00 on, where the customer lives?"""
    local = now.astimezone(zone(timezone))
    return celebrated_on(birthday, local.year) == local.date() and local.time() >= MORNING


def _candidate_dates(now: dt.datetime) -> list[dt.date]:
    """Birth dates that could be 'today' somewhere on Earth now (UTC yesterday, today, tomorrow), every year."""
    days = {(now + dt.timedelta(days=offset)).date() for offset in (-1, 0, 1)}
    dates = []
    for year in range(OLDEST_YEAR, now.year + 1):
        for day in days:
            if calendar.isleap(year) or not (day.month == 2 and day.day == 29):
                dates.append(day.replace(year=year))
            if day.month == 2 and day.day == 28 and calendar.isleap(year):
                dates.append(dt.date(year, 2, 29))  # celebrated on the 28th in common years only; harmless extra
    return dates


def signal_birthdays(session: Session, now: dt.datetime) -> int:
    """Emit `birthday` for every customer whose birthday morning it is; once per customer per year."""
    candidates = session.scalars(select(Customer).where(
        Customer.birthday.in_(_candidate_dates(now)), Customer.redacted_at.is_(None)).execution_options(all_shops=True)).all()
    if not candidates:
        return 0
    zones = dict(session.execute(select(Shop.id, Shop.timezone).where(
        Shop.id.in_({c.shop_id for c in candidates}), Shop.status == "active")).all())
    emitted = 0
    for customer in candidates:
        if customer.shop_id not in zones:
            continue
        timezone = customer.timezone or zones[customer.shop_id]
        if not is_birthday_morning(customer.birthday, now, timezone):
            continue
        year = now.astimezone(zone(timezone)).year
        if emit_signal(session, customer.shop_id, "birthday", dedupe_key=f"birthday:{customer.id}:{year}",
                       customer_id=customer.id, subject=("customer", customer.id), now=now, occurred_at=now,
                       payload={"customer_id": customer.id, "year": year}):
            emitted += 1
    return emitted


@clock_scan(SCAN_ID, every_seconds=SCAN_EVERY)
def scan_birthdays(runtime, now: dt.datetime) -> int:
    with runtime.sessions.begin() as session:
        return 1 if enqueue(session, "automations.signal_birthdays", dedupe_key=period_key(SCAN_ID, SCAN_EVERY, now)) else 0


@job_kind("automations.signal_birthdays", concurrency=1)
def signal_birthdays_job(ctx) -> None:
    """Across all shops: birthday signals for customers whose birthday morning it is now."""
    signal_birthdays(ctx.session, utcnow())
