"""Detection cost on PostgreSQL: one abandoned-cart scan and one due-step claim, each as a ratio to a bare indexed SELECT ... LIMIT of the same rows, and the scan's time at 1,000,000 carts against 10,000.

Usage (from the project root, with the project's virtualenv):
    python bench/detection.py            # 1,000,000 carts (10,000 newly abandoned) and as many flow runs (10,000 due)
    python bench/detection.py --quick    # 100,000 carts / 1,000 due: a smoke run

What "the scan" is: what the clock runs — read the due rows through the index and insert one job per batch of
ids (the per-cart decisions run later in workers). Each timing is the median of several runs, each rolled back.
Needs PostgreSQL at BENCH_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres);
throwaway databases are created and dropped. The last line printed is
`ratio=<scan/bare at the full size> baseline=<bare select ms> ours=<scan ms>`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.orm import sessionmaker  # noqa: E402

import app.automations.detection as detection  # noqa: E402
import app.automations.engine as engine_module  # noqa: E402
from bench.support import answers, say, throwaway_postgres  # noqa: E402
from app.db import make_engine  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.models import utcnow  # noqa: E402

REPEATS = 15

BARE_CARTS = text("""SELECT id, shop_id FROM carts WHERE status = 'active' AND last_activity_at <= :cutoff
                     ORDER BY last_activity_at LIMIT :limit""")
BARE_RUNS = text("""SELECT id, shop_id FROM flow_runs WHERE state = 'waiting' AND due_at <= :now
                    ORDER BY due_at LIMIT :limit""")


def fill(engine, total: int, due: int, now: dt.datetime) -> None:
    """`total` carts and as many flow runs; `due` of each are due now, the rest bought, lost or finished long ago."""
    with engine.begin() as conn:
        shop_id = conn.execute(text("""INSERT INTO shops (platform, domain, name, status, timezone, locale, currency,
                                       webhook_token, public_key, settings, created_at, updated_at)
                                       VALUES ('shopify', 'bench.myshopify.com', 'bench', 'active', 'Europe/Warsaw', 'pl',
                                       'PLN', 'wt', 'pk', '{}', :now, :now) RETURNING id"""), {"now": now}).scalar_one()
        customer_id = conn.execute(text("""INSERT INTO customers (shop_id, email, first_name, last_name, orders_count,
                                           total_spent, created_at, updated_at) VALUES (:shop, 'bench@example.pl', '', '',
                                           0, 0, :now, :now) RETURNING id"""), {"shop": shop_id, "now": now}).scalar_one()
        flow_id = conn.execute(text("""INSERT INTO flows (shop_id, name, trigger, definition, version, enabled, created_at,
                                       updated_at) VALUES (:shop, 'bench', 'cart_abandoned', '{}', 1, true, :now, :now)
                                       RETURNING id"""), {"shop": shop_id, "now": now}).scalar_one()
        params = {"shop": shop_id, "now": now, "due": due, "total": total, "customer": customer_id, "flow": flow_id}
        # Due carts went idle 61..120 minutes ago; the others are old history in other statuses, plus 1% still active and recent.
        conn.execute(text("""
            INSERT INTO carts (shop_id, platform_token, source, email, currency, total, status, last_activity_at,
                               created_at, updated_at)
            SELECT :shop, 'tok-' || g, 'platform', 'k' || g || '@example.pl', 'PLN', 100,
                   CASE WHEN g <= :due THEN 'active'
                        WHEN g % 100 = 0 THEN 'active'
                        ELSE (ARRAY['converted','abandoned','lost','recovered','idle'])[1 + g % 5] END,
                   CASE WHEN g <= :due THEN CAST(:now AS timestamptz) - make_interval(mins => 61 + g % 60)
                        WHEN g % 100 = 0 THEN CAST(:now AS timestamptz) - make_interval(mins => g % 50)
                        ELSE CAST(:now AS timestamptz) - make_interval(days => 2 + g % 400) END,
                   :now, :now
            FROM generate_series(1, :total) AS g"""), params)
        conn.execute(text("""
            INSERT INTO flow_runs (shop_id, flow_id, flow_version, customer_id, trigger_key, state, next_step, due_at,
                                   context, started_at)
            SELECT :shop, :flow, 1, :customer, 'cart:' || g,
                   CASE WHEN g <= :due THEN 'waiting' WHEN g % 100 = 0 THEN 'waiting'
                        ELSE (ARRAY['completed','exited'])[1 + g % 2] END,
                   1,
                   CASE WHEN g <= :due THEN CAST(:now AS timestamptz) - make_interval(secs => 1 + g % 600)
                        WHEN g % 100 = 0 THEN CAST(:now AS timestamptz) + make_interval(hours => 1 + g % 70)
                        ELSE NULL END,
                   '{}', :now
            FROM generate_series(1, :total) AS g"""), params)
    with engine.connect() as conn:
        conn.execute(text("ANALYZE carts"))
        conn.execute(text("ANALYZE flow_runs"))
        conn.commit()


def interleaved_medians_ms(actions: dict) -> dict[str, float]:
    """Median milliseconds of each action; rounds alternate between them, so a busy machine slows all alike."""
    for action in actions.values():  # warm caches and connections
        action()
    times: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(REPEATS):
        for name, action in actions.items():
            started = time.perf_counter()
            action()
            times[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


def measure(engine, now: dt.datetime, due: int) -> dict[str, float]:
    sessions = sessionmaker(bind=engine)
    cutoff = now - dt.timedelta(minutes=detection.DEFAULT_ABANDON_MINUTES)
    counts = {}

    def bare(statement, **params):
        with engine.connect() as conn:
            counts[statement.text[:20]] = len(conn.execute(statement, params).all())

    def ours(scan):
        session = sessions()
        try:
            counts[scan.__name__] = scan(session, now)
        finally:
            session.rollback()
            session.close()

    actions = {
        "bare_carts": lambda: bare(BARE_CARTS, cutoff=cutoff, limit=detection.SCAN_LIMIT),
        "scan": lambda: ours(detection.enqueue_abandoned_cart_checks),
        "bare_runs": lambda: bare(BARE_RUNS, now=now, limit=engine_module.SCAN_LIMIT),
        "claim": lambda: ours(engine_module.enqueue_due_steps),
    }
    results = interleaved_medians_ms(actions)
    found = counts[BARE_CARTS.text[:20]]
    if found != due:
        raise RuntimeError(f"the bare select found {found} due carts, expected {due}")
    return results


def with_database(total: int, due: int, now: dt.datetime) -> dict[str, float]:
    with throwaway_postgres("bench_detect") as url:
        engine = make_engine(url)
        try:
            upgrade(engine)
            started = time.perf_counter()
            fill(engine, total, due, now)
            say(f"  filled {total:,} carts and {total:,} flow runs ({due:,} due of each) in {time.perf_counter() - started:.1f}s")
            return measure(engine, now, due)
        finally:
            engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 carts with 1,000 due: a smoke run")
    options = parser.parse_args()
    total, due = (100_000, 1_000) if options.quick else (1_000_000, 10_000)
    if not answers("127.0.0.1", 5432):
        raise SystemExit("PostgreSQL does not answer on 127.0.0.1:5432; this benchmark needs it")
    now = utcnow()

    say(f"large table: {total:,} carts")
    large = with_database(total, due, now)
    say(f"small table: {due:,} carts, all of them due")
    small = with_database(due, due, now)

    scan_ratio = large["scan"] / large["bare_carts"]
    claim_ratio = large["claim"] / large["bare_runs"]
    growth = large["scan"] / small["scan"]
    say(f"abandoned-cart scan at {total:,}: {large['scan']:.1f} ms vs bare select {large['bare_carts']:.1f} ms "
        f"-> ratio {scan_ratio:.2f} (target <= 2.0)")
    say(f"due-step claim at {total:,}: {large['claim']:.1f} ms vs bare select {large['bare_runs']:.1f} ms "
        f"-> ratio {claim_ratio:.2f} (target <= 2.0)")
    say(f"scan at {total:,} carts vs {due:,} carts (same {due:,} due): {large['scan']:.1f} ms vs {small['scan']:.1f} ms "
        f"-> ratio {growth:.2f} (target <= 1.5)")
    say(f"ratio={scan_ratio:.2f} baseline={large['bare_carts']:.2f} ours={large['scan']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
