"""Birthdays arrive in the morning of the customer's own time zone, once a year, with a coupon from the ready flow."""
from __future__ import annotations

import datetime as dt

from app.automations.birthdays import celebrated_on, is_birthday_morning, signal_birthdays
from app.models import Customer
from app.tenancy import shop_context
from tests.automations_kit import (Coupon, Signal, clock_tick, enable_library_flow, fake, rows, runtime,  # noqa: F401
                                   shop_id, shopify_app, templates_sent, travel)
from tests.factories import make_customer

BIRTHDAY = dt.date(1990, 12, 2)


def add_customer(runtime, shop_id: int, email: str, timezone: str | None, birthday: dt.date = BIRTHDAY) -> int:
    with runtime.sessions.begin() as session, shop_context(shop_id):
        shop = type("S", (), {"id": shop_id})()
        return make_customer(session, shop, email, birthday=birthday, timezone=timezone).id


def birthday_signals(runtime, shop_id: int) -> list[int]:
    return [s.customer_id for s in rows(runtime, shop_id, Signal) if s.kind == "birthday"]


def scan(runtime, now: dt.datetime) -> int:
    with runtime.sessions.begin() as session:
        return signal_birthdays(session, now)


def test_a_birthday_starts_at_nine_in_the_customers_own_time_zone(runtime, shop_id):
    auckland = add_customer(runtime, shop_id, "aroha@example.nz", "Pacific/Auckland")
    warsaw = add_customer(runtime, shop_id, "ola@example.pl", None)  # the shop's zone: Europe/Warsaw

    scan(runtime, dt.datetime(2026, 12, 1, 21, 0, tzinfo=dt.timezone.utc))  # 10:00 on 2 Dec in Auckland, 22:00 on 1 Dec in Warsaw
    assert birthday_signals(runtime, shop_id) == [auckland]

    scan(runtime, dt.datetime(2026, 12, 2, 8, 30, tzinfo=dt.timezone.utc))  # 09:30 on 2 Dec in Warsaw
    assert birthday_signals(runtime, shop_id) == [auckland, warsaw]


def test_a_birthday_is_signalled_once_however_often_the_scan_runs(runtime, shop_id):
    add_customer(runtime, shop_id, "ola@example.pl", "Europe/Warsaw")
    for hour in (9, 10, 11):
        scan(runtime, dt.datetime(2026, 12, 2, hour, 0, tzinfo=dt.timezone.utc))
    assert len(birthday_signals(runtime, shop_id)) == 1


def test_the_birthday_flow_sends_wishes_with_a_coupon(runtime, shop_id, travel):
    enable_library_flow(runtime, shop_id, "birthday")
    customer_id = add_customer(runtime, shop_id, "ola@example.pl", "Europe/Warsaw")
    morning = travel(dt.datetime(2026, 12, 2, 8, 30, tzinfo=dt.timezone.utc))
    scan(runtime, morning)

    clock_tick(runtime, morning)

    assert templates_sent(runtime, shop_id) == ["birthday_coupon"]
    [coupon] = rows(runtime, shop_id, Coupon)
    assert coupon.customer_id == customer_id and coupon.code.startswith("URODZINY-")


def test_a_29_february_birthday_is_celebrated_on_the_28th_in_common_years():
    assert celebrated_on(dt.date(2000, 2, 29), 2027) == dt.date(2027, 2, 28)
    assert celebrated_on(dt.date(2000, 2, 29), 2028) == dt.date(2028, 2, 29)
    assert is_birthday_morning(dt.date(2000, 2, 29), dt.datetime(2027, 2, 28, 9, 0, tzinfo=dt.timezone.utc), "Europe/London")


def test_a_redacted_customer_gets_no_birthday(runtime, shop_id):
    customer_id = add_customer(runtime, shop_id, "ola@example.pl", "Europe/Warsaw")
    with runtime.sessions.begin() as session, shop_context(shop_id):
        session.get(Customer, customer_id).redacted_at = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    scan(runtime, dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.timezone.utc))
    assert birthday_signals(runtime, shop_id) == []
