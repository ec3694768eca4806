"""WooCommerce initial sync: 100,000 orders from the fake store through the real `woocommerce.sync` job, as orders/s
and as a ratio to a plain sequential `requests` loop that only downloads the same pages, plus our peak memory.

Usage (from the project root, with the project's virtualenv):
    python bench/woocommerce_sync.py                    # 100,000 orders
    python bench/woocommerce_sync.py --quick            # 3,000 orders: a smoke run of a few seconds
    python bench/woocommerce_sync.py --orders N --page-latency 0.3 --postgres

The fake store runs in its own process (its memory is not ours) and generates each page of 100 orders when asked,
waiting `--page-latency` seconds first, as a PHP shop takes time to build a page (0.3 s by default; real shops
take 0.3-2 s for a page of 100 orders). Ours stores into SQLite in a scratch directory (or, with --postgres, a
throwaway PostgreSQL database at BENCH_POSTGRES_URL). The last line is
`ratio=<ours orders/s / baseline orders/s> baseline=<orders/s> ours=<orders/s>`; the line before gives peak memory.
Targets: ratio >= 1.0 (concurrent fetching pays for parsing and storing) and peak memory under 250 MB.
"""
from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import resource
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.support import say, throwaway_postgres  # noqa: E402

import requests  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

FIRST_ORDER = 100_000
BASE_TIME = dt.datetime(2026, 1, 1)
MEMORY_TARGET_MB = 250


# --- the fake store, in its own process ------------------------------------------------------------

def serve_generated_store(count: int, page_latency: float, ready, port_box) -> None:
    """A FakeWooCommerce whose order listing is generated page by page (nothing held for 100,000 orders)."""
    from tests.fake_woocommerce import FakeWooCommerce, gmt

    class GeneratedStore(FakeWooCommerce):
        def __init__(self):
            super().__init__(is_ssl=True, tracking_plugin=None)
            self.template = self.add_order(1, modified=BASE_TIME)
            self.orders.clear()
            self.requests = _Forgetful()

        def _wc_v3(self, method, route, query, body):
            if not (method == "GET" and route == "orders"):
                return super()._wc_v3(method, route, query, body)
            per_page, page = int(query.get("per_page", 10)), int(query.get("page", 1))
            start = (page - 1) * per_page
            chunk = []
            for index in range(start, min(start + per_page, count)):
                order_id = FIRST_ORDER + index
                moment = BASE_TIME + dt.timedelta(seconds=index)
                chunk.append({**self.template, "id": order_id, "number": str(order_id),
                              "date_created_gmt": gmt(moment), "date_modified_gmt": gmt(moment),
                              "date_paid_gmt": gmt(moment)})
            pages = -(-count // per_page)
            time.sleep(page_latency)
            return 200, chunk, {"X-WP-Total": str(count), "X-WP-TotalPages": str(pages)}

    class _Forgetful(list):
        def append(self, _item) -> None:  # a long run would otherwise keep every request
            pass

    store = GeneratedStore().start()
    port_box.value = int(store.url.rsplit(":", 1)[1])
    ready.set()
    while True:
        time.sleep(3600)


# --- the two sides ---------------------------------------------------------------------------------

def baseline_orders_per_second(store_url: str, count: int) -> float:
    """Download every page one after the other with plain requests, parse nothing beyond the JSON list."""
    from tests.fake_woocommerce import CONSUMER_KEY, CONSUMER_SECRET

    session = requests.Session()
    session.auth = (CONSUMER_KEY, CONSUMER_SECRET)
    started = time.perf_counter()
    seen, page = 0, 1
    while True:
        response = session.get(f"{store_url}/wp-json/wc/v3/orders", timeout=60,
                               params={"per_page": 100, "page": page, "orderby": "modified", "order": "asc",
                                       "dates_are_gmt": "true"})
        response.raise_for_status()
        seen += len(response.json())
        if page >= int(response.headers["X-WP-TotalPages"]):
            break
        page += 1
    elapsed = time.perf_counter() - started
    if seen != count:
        raise RuntimeError(f"the baseline saw {seen} orders, expected {count}")
    return count / elapsed


def our_orders_per_second(store_url: str, database_url: str, scratch: Path, count: int) -> float:
    """Connect the store as a shop and run the real `woocommerce.sync` job for orders in this process."""
    from app.db import make_engine
    from app.jobs.catalog import load_job_kinds
    from app.jobs.executors.local import LocalWorker
    from app.jobs.queue import enqueue
    from app.config import Settings
    from app.migrate import upgrade
    from app.models import Order
    from app.runtime import build_runtime
    from app.tenancy import shop_context
    from app.woocommerce.access import store_credentials
    from connectors.woocommerce.auth import Credentials
    from tests.factories import make_shop
    from tests.fake_woocommerce import CONSUMER_KEY, CONSUMER_SECRET

    engine = make_engine(database_url)
    upgrade(engine)
    engine.dispose()
    load_job_kinds()
    settings = Settings.from_env({
        "DATABASE_URL": database_url, "INSTANCE_DIR": str(scratch / "instance"), "APP_ENV": "test",
        "FERNET_KEYS": Fernet.generate_key().decode(), "SECRET_KEY": "bench", "ALLOW_PRIVATE_STORE_URLS": "true",
        "LOG_LEVEL": "WARNING"})
    runtime = build_runtime(settings)
    try:
        with runtime.sessions.begin() as session:
            shop = make_shop(session, store_url, platform="woocommerce", currency="PLN")
            store_credentials(shop, Credentials(CONSUMER_KEY, CONSUMER_SECRET))
            shop_id = shop.id
            job_id = enqueue(session, "woocommerce.sync", shop_id=shop_id, purpose="initial", resources=["orders"])
        started = time.perf_counter()
        LocalWorker(runtime).run(exit_when_idle=True)
        elapsed = time.perf_counter() - started
        with runtime.sessions() as session, shop_context(shop_id):
            stored = session.scalar(select(func.count()).select_from(Order))
            status = session.execute(text("SELECT status, last_error FROM jobs WHERE id = :id"), {"id": job_id}).one()
    finally:
        runtime.close()
    if status[0] != "succeeded" or stored != count:
        raise RuntimeError(f"the sync job ended {status[0]} ({status[1]}) with {stored} of {count} orders stored")
    return count / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3,000 orders: a smoke run")
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--page-latency", type=float, default=0.3, help="seconds the store takes per page")
    parser.add_argument("--postgres", action="store_true", help="store into PostgreSQL instead of SQLite")
    options = parser.parse_args()
    count = 3_000 if options.quick else options.orders
    if count < 1:
        parser.error("--orders must be at least 1")

    context = multiprocessing.get_context("fork")
    ready, port_box = context.Event(), context.Value("i", 0)
    server = context.Process(target=serve_generated_store, args=(count, options.page_latency, ready, port_box),
                             daemon=True)
    server.start()
    scratch = Path(tempfile.mkdtemp(prefix="bench-woo-"))
    database_cleanup = ExitStack()
    try:
        if not ready.wait(30):
            raise SystemExit("the fake store did not start")
        store_url = f"http://127.0.0.1:{port_box.value}"
        if options.postgres:
            database_url = database_cleanup.enter_context(throwaway_postgres("bench_woo"))
        else:
            database_url = f"sqlite:///{scratch / 'companion.db'}"

        baseline = baseline_orders_per_second(store_url, count)
        say(f"baseline: plain sequential requests download of {count} orders: {baseline:.1f} orders/s "
            f"({options.page_latency}s per page at the store)")
        ours = our_orders_per_second(store_url, database_url, scratch, count)
        say(f"ours: woocommerce.sync (concurrent pages, mapped and stored in {'PostgreSQL' if options.postgres else 'SQLite'}): "
            f"{ours:.1f} orders/s")
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        verdict = "ok" if peak_mb < MEMORY_TARGET_MB else f"FAIL: over the {MEMORY_TARGET_MB} MB target"
        say(f"peak_rss_mb={peak_mb:.1f} ({verdict}); ratio target >= 1.0")
        say(f"ratio={ours / baseline:.3f} baseline={baseline:.1f} ours={ours:.1f}")
        return 0 if peak_mb < MEMORY_TARGET_MB else 1
    finally:
        server.terminate()
        database_cleanup.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
