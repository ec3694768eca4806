"""Shopify initial sync of N orders from the fake Shopify's bulk JSONL through our job path: orders/s and peak memory, as a ratio to a plain streaming download of the same file.

Usage (from the project root, with the project's virtualenv):
    python bench/shopify_sync.py                  # 100,000 orders (2 lines each), SQLite in a throwaway INSTANCE_DIR
    python bench/shopify_sync.py --quick          # 5,000 orders: a smoke run
    python bench/shopify_sync.py --orders N       # N orders
    python bench/shopify_sync.py --postgres       # a throwaway PostgreSQL database at BENCH_POSTGRES_URL instead

The fake Shopify (tests/fake_shopify.py, orders generated line by line as the file is read) runs in a process
of its own, so its memory is not counted as ours. Ours: a `shopify.start_initial_sync` job is queued for a shop
holding the fake's token, and one `python -m app worker --exit-when-idle` process runs it and the
`shopify.sync_step` jobs it leads to (bulk operation started, polled, its JSONL streamed into the database);
orders/s is the orders run's finished_at - started_at, and peak memory is that worker's RSS high-water mark
(getrusage of the child, ru_maxrss). Baseline, same run, same fake: a plain `requests` streaming download of
the same JSONL with json.loads of each line, nothing stored. Target: peak RSS under 250 MB whatever the
shop's size (a FAIL line otherwise, exit status 1).
The last line printed is `ratio=<ours/baseline orders/s> baseline=<orders/s> ours=<orders/s>`;
the line before it is `peak_rss_mb=...`.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.support import say, throwaway_postgres  # noqa: E402

SHOP_DOMAIN = "bench-shop.myshopify.com"
API_KEY, API_SECRET = "bench-client-id", "shpss_bench_secret"
ACCESS_TOKEN = "shpat_fake_token"  # FakeShopify's default non-expiring token
LINES_PER_ORDER = 2
PEAK_RSS_TARGET_MB = 250.0


# --- the fake Shopify, in a process of its own -----------------------------------------------------

def serve_fake(orders: int) -> None:
    """Child mode: start FakeShopify with `orders` generated orders, print its URL, serve until stdin closes."""
    from tests.fake_shopify import FakeShopify

    fake = FakeShopify(client_id=API_KEY, client_secret=API_SECRET, access_token=ACCESS_TOKEN)
    fake.add_generated_orders(orders, lines_per_order=LINES_PER_ORDER)
    fake.start()
    print(fake.url, flush=True)
    sys.stdin.read()  # the parent closes our stdin (or dies) when it is done
    fake.stop()


class FakeProcess:
    def __init__(self, orders: int, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        with log_path.open("wb") as log_file:
            self.process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve-fake", str(orders)],
                                            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            stderr=log_file, start_new_session=True)
        line = self.process.stdout.readline().decode().strip()
        if not line.startswith("http://"):
            self.stop()
            raise RuntimeError(f"the fake Shopify did not start: {line!r}\n{log_path.read_text(errors='replace')}")
        self.url = line

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.process.wait()


# --- ours: the real job path in a worker process ---------------------------------------------------

def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def orders_run(engine):
    from sqlalchemy import text

    with engine.connect() as conn:
        return conn.execute(text("SELECT status, records_done, records_total, started_at, finished_at, result_url, error "
                                 "FROM sync_runs WHERE kind = 'initial' AND resource = 'orders'")).mappings().first()


def as_datetime(value):
    import datetime as dt

    return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def run_sync_worker(env: dict[str, str], engine, log_path: Path, orders: int) -> dict:
    """One `python -m app worker --exit-when-idle`; returns its exit code, ru_maxrss and an RSS timeline."""
    started = time.perf_counter()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "app", "worker", "--exit-when-idle"], cwd=ROOT, env=env,
                                   stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    timeline: list[tuple[float, int, float]] = []  # (seconds, orders done, RSS MB)
    next_report = started + 10
    try:
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            now = time.perf_counter()
            rss = rss_mb(process.pid)
            run = orders_run(engine)
            done = run["records_done"] if run else 0
            if rss is not None:
                timeline.append((now - started, done or 0, rss))
            if now >= next_report:
                print(f"  ... {now - started:.0f}s: {done or 0} of {orders} orders, worker RSS {rss or 0:.1f} MB",
                      file=sys.stderr, flush=True)
                next_report = now + 10
            time.sleep(0.25)
    except BaseException:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        raise
    return dict(exit_code=process.returncode, peak_rss_mb=usage.ru_maxrss / 1024, wall=time.perf_counter() - started,
                timeline=timeline)


def counts(engine) -> dict[str, int]:
    from sqlalchemy import text

    with engine.connect() as conn:
        return {table: conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
                for table in ("orders", "order_lines")}


# --- baseline: a plain streaming download ----------------------------------------------------------

def baseline_orders_per_second(url: str) -> tuple[float, int, int, float]:
    """requests streaming GET of the JSONL, json.loads of each line, nothing kept; (orders/s, orders, lines, s)."""
    import requests

    orders = lines = 0
    started = time.perf_counter()
    with requests.get(url, stream=True, timeout=60) as response:
        response.raise_for_status()
        for raw in response.iter_lines(chunk_size=64 * 1024):
            if not raw:
                continue
            item = json.loads(raw)
            lines += 1
            if "__parentId" not in item:
                orders += 1
    elapsed = time.perf_counter() - started
    return orders / elapsed, orders, lines, elapsed


# --- main ------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5,000 orders: a smoke run")
    parser.add_argument("--orders", type=int, default=100_000, help="orders in the shop (default 100,000)")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL database at BENCH_POSTGRES_URL")
    parser.add_argument("--serve-fake", type=int, metavar="N", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.serve_fake is not None:
        serve_fake(options.serve_fake)
        return 0
    count = 5_000 if options.quick else options.orders
    if count < 1:
        parser.error("--orders must be at least 1")

    from cryptography.fernet import Fernet
    from sqlalchemy import create_engine

    from app.config import Settings
    from app.db import make_engine
    from app.jobs.catalog import load_job_kinds
    from app.jobs.queue import enqueue
    from app.migrate import upgrade
    from app.runtime import build_runtime
    from tests.factories import make_shop

    run_started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="bench-shopify-sync-"))
    database_cleanup = ExitStack()
    engine = reader = fake = None
    name = None
    try:
        if options.postgres:
            url = database_cleanup.enter_context(throwaway_postgres("bench_sync"))
            name = url.rsplit("/", 1)[1]
        else:
            url = f"sqlite:///{scratch / 'instance' / 'companion.db'}"
        engine = make_engine(url)
        upgrade(engine)
        # Progress is read with a plain engine: ours opens every SQLite transaction with BEGIN IMMEDIATE,
        # which would take the write lock from the worker four times a second.
        reader = create_engine(url) if url.startswith("sqlite") else engine
        base_env = {**os.environ, "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        fake = FakeProcess(count, base_env, scratch / "fake.log")
        env = {**base_env, "DATABASE_URL": url, "INSTANCE_DIR": str(scratch / "instance"),
               "FERNET_KEYS": Fernet.generate_key().decode(), "SECRET_KEY": secrets.token_hex(16),
               "APP_ENV": "production", "SHOPIFY_API_KEY": API_KEY, "SHOPIFY_API_SECRET": API_SECRET,
               "SHOPIFY_ADMIN_BASE_URL": fake.url, "JOB_POLL_INTERVAL_SECONDS": "0.05", "LOG_LEVEL": "WARNING"}
        for variable in ("JOB_EXECUTOR", "CELERY_BROKER_URL", "CELERY_QUEUE", "EXTRA_JOB_MODULES",
                         "SHOPIFY_PREVIOUS_API_SECRET", "SHOPIFY_API_VERSION"):
            env.pop(variable, None)

        load_job_kinds()
        runtime = build_runtime(Settings.from_env(env))
        try:
            with runtime.sessions.begin() as session:
                shop_id = make_shop(session, SHOP_DOMAIN, credentials={"access_token": ACCESS_TOKEN}).id
                enqueue(session, "shopify.start_initial_sync", shop_id=shop_id)
        finally:
            runtime.close()
        database = f"PostgreSQL ({name})" if options.postgres else "SQLite (WAL)"
        say(f"initial sync of {count} orders ({LINES_PER_ORDER} lines each) from the fake Shopify at {fake.url}, "
            f"one `python -m app worker` process, database {database}")

        worker = run_sync_worker(env, reader, scratch / "worker.log", count)
        run = orders_run(engine)
        held = counts(engine)
        problems = []
        if worker["exit_code"] != 0:
            problems.append(f"the worker exited with {worker['exit_code']}")
        if run is None or run["status"] != "done":
            problems.append(f"the orders sync run is {dict(run) if run else 'missing'}")
        if held["orders"] != count or held["order_lines"] != count * LINES_PER_ORDER:
            problems.append(f"held {held['orders']} orders and {held['order_lines']} lines after syncing {count} orders "
                            f"({count * LINES_PER_ORDER} lines)")
        if problems:
            tail = "\n".join((scratch / "worker.log").read_text(errors="replace").splitlines()[-30:])
            print(f"--- worker.log ---\n{tail}", file=sys.stderr)
            for problem in problems:
                say(f"FAIL: {problem}")
            return 1
        import_seconds = (as_datetime(run["finished_at"]) - as_datetime(run["started_at"])).total_seconds()
        ours = count / import_seconds
        say(f"ours: {ours:.1f} orders/s ({count} orders and {held['order_lines']} lines in {import_seconds:.2f}s, "
            f"bulk operation start to import done; the worker ran {worker['wall']:.2f}s including start-up and "
            f"the three empty resources)")
        timeline = worker["timeline"]
        if timeline:
            marks = []
            for fraction in (0.1, 0.25, 0.5, 0.75, 1.0):
                point = min(timeline, key=lambda p: abs(p[1] - fraction * count))
                marks.append(f"{point[1]} orders: {point[2]:.0f} MB")
            say(f"worker RSS as the import went: {'; '.join(marks)}")

        baseline, base_orders, base_lines, base_seconds = baseline_orders_per_second(run["result_url"])
        say(f"baseline: {baseline:.1f} orders/s (requests streaming GET + json.loads: {base_orders} orders, "
            f"{base_lines} lines in {base_seconds:.2f}s, {base_lines / base_seconds:.1f} lines/s)")
        if base_orders != count:
            say(f"FAIL: the baseline read {base_orders} orders, expected {count}")
            problems.append("baseline")

        peak = worker["peak_rss_mb"]
        met = peak < PEAK_RSS_TARGET_MB
        say(f"peak memory of the importing worker: {peak:.1f} MB (target < {PEAK_RSS_TARGET_MB:.0f} MB: "
            f"{'met' if met else 'NOT met'})")
        if not met:
            say(f"FAIL: peak RSS {peak:.1f} MB is over {PEAK_RSS_TARGET_MB:.0f} MB")
            problems.append("memory")
        print(f"benchmark ran {time.perf_counter() - run_started:.1f}s", file=sys.stderr)
        say(f"peak_rss_mb={peak:.1f}")
        say(f"ratio={ours / baseline:.3f} baseline={baseline:.1f} ours={ours:.1f}")
        return 1 if problems else 0
    finally:
        if fake is not None:
            fake.stop()
        if reader is not None:
            reader.dispose()
        if engine is not None:
            engine.dispose()
        database_cleanup.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
