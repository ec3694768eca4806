"""When a wait step ends: a duration, or the next time of day on the shop's wall clock (DST-safe)."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def wait_duration(step: dict) -> dt.timedelta:
    return dt.timedelta(days=float(step.get("days", 0)), hours=float(step.get("hours", 0)),
                        minutes=float(step.get("minutes", 0)))


def local_to_utc(day: dt.date, time_of_day: dt.time, tz: ZoneInfo) -> dt.datetime:
    """A wall-clock time in `tz` as UTC. A time skipped by the spring change lands after the gap (02:30 -> 03:30);
    a time that happens twice in autumn is its first occurrence."""
    return dt.datetime.combine(day, time_of_day).replace(tzinfo=tz, fold=0).astimezone(dt.timezone.utc)


def wait_until(step: dict, now: dt.datetime, shop_timezone: str | None) -> dt.datetime:
    """When a wait step that starts at `now` ends.

    Without `until`: `now` plus days, hours and minutes (absolute time). With `until` (HH:MM on the shop's
    clock): that time `days` calendar days later (in the shop's zone), but never before `now` plus the
    hours and minutes; if it would be, the next day at that time.
    """
    if not step.get("until"):
        return now + wait_duration(step)
    tz = zone(shop_timezone)
    hours, minutes = (int(part) for part in str(step["until"]).split(":"))
    earliest = now + dt.timedelta(hours=float(step.get("hours", 0)), minutes=float(step.get("minutes", 0)))
    day = earliest.astimezone(tz).date() + dt.timedelta(days=int(step.get("days", 0)))
    due = local_to_utc(day, dt.time(hours, minutes), tz)
    while due < earliest:
        day += dt.timedelta(days=1)
        due = local_to_utc(day, dt.time(hours, minutes), tz)
    return due
