"""Segment cost on PostgreSQL: our compiled segment query against a hand-written SQL query of the same rows.

Usage (from the project root, with the project's virtualenv):
    python bench/segments.py            # 100,000 customers
    python bench/segments.py --quick    # 20,000 customers: a smoke run

The segment is "bought in the last 30 days, and spent over 2,000 PLN or is tagged VIP" over the shop that
tests/segments_kit.py makes (a quarter of the customers ordered, some spend in EUR, 1 in 50 VIP). "Ours" is what
the service runs: `compile_segment` built and executed through a session, all ids fetched; the baseline is a
hand-written SQL string returning the same ids. Each timing is the median of several runs. Also printed: one
full membership refresh (INSERT ... SELECT of every member). Needs PostgreSQL at BENCH_POSTGRES_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres); a throwaway database is created and dropped. The last
line printed is `ratio=<ours/baseline> baseline=<hand-written ms> ours=<compiled ms>`.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

from app.automations.segments import SegmentScope, compile_segment, create_segment, refresh_segment  # noqa: E402
from app.db import make_engine  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.models import utcnow  # noqa: E402
from app.tenancy import shop_context  # noqa: E402
from bench.support import ADMIN_URL, answers, say, throwaway_postgres  # noqa: E402
from tests.factories import make_shop  # noqa: E402
from tests.segments_kit import DAY, expected_recent_big_spenders_or_vip, fill_shop  # noqa: E402

REPEATS = 11
DEFINITION = {"all": [{"rule": "bought", "within_days": 30},
                      {"any": [{"rule": "lifetime_spend", "op": "gt", "amount": "2000", "currency": "PLN"},
                               {"rule": "has_tag", "tag": "VIP"}]}]}
HAND_WRITTEN = text("""
    WITH recent AS (SELECT DISTINCT customer_id FROM orders
                    WHERE shop_id = :shop AND customer_id IS NOT NULL AND cancelled_at IS NULL
                      AND COALESCE(placed_at, created_at) >= :since),
         spent AS (SELECT customer_id FROM orders
                   WHERE shop_id = :shop AND customer_id IS NOT NULL AND cancelled_at IS NULL AND currency = 'PLN'
                     AND (paid_at IS NOT NULL OR financial_status IN ('paid', 'partially_refunded'))
                   GROUP BY customer_id HAVING SUM(total) > 2000),
         vip AS (SELECT ct.customer_id FROM customer_tags ct JOIN tags t ON t.shop_id = ct.shop_id AND t.id = ct.tag_id
                 WHERE ct.shop_id = :shop AND lower(t.name) = 'vip')
    SELECT c.id FROM customers c JOIN recent r ON r.customer_id = c.id
    WHERE c.shop_id = :shop AND c.redacted_at IS NULL
      AND ((COALESCE(c.currency, 'PLN') = 'PLN' AND c.total_spent > 2000)
           OR c.id IN (SELECT customer_id FROM spent) OR c.id IN (SELECT customer_id FROM vip))""")


def median_ms(action) -> tuple[float, object]:
    timings, result = [], None
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = action()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 customers instead of 100,000")
    args = parser.parse_args()
    total = 20_000 if args.quick else 100_000
    if not answers("127.0.0.1", 5432) and "127.0.0.1" in ADMIN_URL:
        say("PostgreSQL does not answer at 127.0.0.1:5432; set BENCH_POSTGRES_URL")
        return 2
    database_cleanup = ExitStack()
    engine = None
    try:
        engine = make_engine(database_cleanup.enter_context(throwaway_postgres("bench_segments")))
        upgrade(engine)
        sessions = sessionmaker(engine)
        now = utcnow()
        with sessions.begin() as session:
            shop_id = make_shop(session, currency="PLN").id
        started = time.perf_counter()
        with sessions.begin() as session, shop_context(shop_id):
            fill_shop(session, shop_id, total, now)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
        say(f"customers={total} filled in {time.perf_counter() - started:.1f}s")
        scope = SegmentScope(shop_id, now, "PLN")

        def ours():
            with sessions() as session, shop_context(shop_id):
                return set(session.scalars(compile_segment(DEFINITION, scope)))

        def baseline():
            with sessions() as session:
                return set(session.scalars(HAND_WRITTEN, {"shop": shop_id, "since": now - 30 * DAY}))

        ours(), baseline()  # warm caches and the statement cache
        baseline_ms, expected_rows = median_ms(baseline)
        ours_ms, rows = median_ms(ours)
        if rows != expected_rows or len(rows) != expected_recent_big_spenders_or_vip(total):
            say(f"rows differ: ours={len(rows)} baseline={len(expected_rows)}")
            return 1
        with sessions.begin() as session, shop_context(shop_id):
            segment = create_segment(session, shop_id, "recent big spenders", DEFINITION)
            started = time.perf_counter()
            refreshed = refresh_segment(session, segment, now)
            refresh_ms = (time.perf_counter() - started) * 1000
        say(f"members={len(rows)} refresh_all_ms={refresh_ms:.1f} (stored {len(refreshed.entered)} members)")
        say(f"ratio={ours_ms / baseline_ms:.2f} baseline={baseline_ms:.1f} ours={ours_ms:.1f}")
        return 0
    finally:
        if engine is not None:
            engine.dispose()
        database_cleanup.close()


if __name__ == "__main__":
    sys.exit(main())
