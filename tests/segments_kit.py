"""A realistic shop made by the database itself, for the segment tests and bench/segments.py."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import bindparam, text

from app.models import Tag
from app.models.base import UTCDateTime

DAY = dt.timedelta(days=1)

FILL_CUSTOMERS = text("""
    WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :last)
    INSERT INTO customers (shop_id, platform_id, email, first_name, last_name, orders_count, total_spent, currency,
                           created_at, updated_at)
    SELECT :shop, CAST(i AS VARCHAR(16)), 'c' || CAST(i AS VARCHAR(16)) || '@example.pl', '', '',
           CASE WHEN i % 4 = 0 THEN 1 ELSE 0 END, i % 5000, CASE WHEN i % 10 = 0 THEN 'EUR' ELSE 'PLN' END, :now, :now
    FROM n""")
FILL_ORDERS = text("""
    INSERT INTO orders (shop_id, platform_id, number, customer_id, status, currency, subtotal, shipping_total, tax_total,
                        discount_total, total, financial_status, placed_at, paid_at, cancelled_at, created_at, updated_at)
    SELECT shop_id, 'o' || platform_id, '', id, 'processing', 'PLN', 100, 0, 0, 0, 100, 'paid', placed, placed,
           CASE WHEN k % 40 = 0 THEN placed END, :now, :now
    FROM (SELECT shop_id, platform_id, id, CAST(platform_id AS INTEGER) AS k,
                 CASE CAST(platform_id AS INTEGER) % 3 WHEN 0 THEN :ten_days_ago WHEN 1 THEN :weeks_ago ELSE :months_ago END
                 AS placed
          FROM customers WHERE shop_id = :shop) numbered
    WHERE k % 4 = 0""")
FILL_TAGS = text("""
    INSERT INTO customer_tags (shop_id, customer_id, tag_id, created_at)
    SELECT shop_id, id, :tag, :now FROM customers WHERE shop_id = :shop AND CAST(platform_id AS INTEGER) % 50 = 0""")


def fill_shop(session, shop_id: int, total: int, now: dt.datetime) -> None:
    """`total` customers made by the database itself: 1 in 4 ordered (a third of those within 30 days, 1 in 10 of
    the orders cancelled), lifetime spend 0-4,999 with 1 in 10 in EUR, 1 in 50 tagged VIP."""
    when = UTCDateTime()
    vip = Tag(shop_id=shop_id, name="VIP")
    session.add(vip)
    session.flush()
    session.execute(FILL_CUSTOMERS.bindparams(bindparam("now", type_=when)), {"shop": shop_id, "last": total - 1, "now": now})
    session.execute(FILL_ORDERS.bindparams(*(bindparam(name, type_=when) for name in
                                             ("now", "ten_days_ago", "weeks_ago", "months_ago"))),
                    {"shop": shop_id, "now": now, "ten_days_ago": now - 10 * DAY, "weeks_ago": now - 45 * DAY,
                     "months_ago": now - 75 * DAY})
    session.execute(FILL_TAGS.bindparams(bindparam("now", type_=when)), {"shop": shop_id, "tag": vip.id, "now": now})


def expected_recent_big_spenders_or_vip(total: int) -> int:
    """How many of `fill_shop`'s customers bought within 30 days and spent over 2,000 PLN or are VIP."""
    return sum(1 for i in range(total) if i % 4 == 0 and i % 40 != 0 and i % 3 == 0
               and ((i % 5000 > 2000 and i % 10 != 0) or i % 50 == 0))


def polish_shop_with_api_token(runtime) -> dict:
    """A Polish shop (PLN, Europe/Warsaw) and the bearer header of an API token for it: {"id", "auth"}."""
    from app.automations.api import issue_api_token
    from tests.factories import make_shop

    with runtime.sessions.begin() as session:
        shop = make_shop(session, timezone="Europe/Warsaw", locale="pl", currency="PLN")
        return {"id": shop.id, "auth": {"Authorization": f"Bearer {issue_api_token(session, shop.id, 'tests')}"}}
