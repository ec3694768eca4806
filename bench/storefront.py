"""Storefront events through gunicorn on loopback: events/s accepted by `POST /s/events`, as a ratio to a bare Flask endpoint on the same server in the same run; and the snippet's size.

Usage (from the project root, with the project's virtualenv):
    python bench/storefront.py               # 15 s of load per endpoint, SQLite in a throwaway INSTANCE_DIR
    python bench/storefront.py --quick       # 3 s per endpoint: a smoke run
    python bench/storefront.py --postgres    # a throwaway PostgreSQL database at BENCH_POSTGRES_URL instead

gunicorn serves bench/bare_wsgi.py (2 sync workers by default, as the Procfile): `/s/events` is our
app, `/bench/bare` an empty Flask view that returns 202 without reading the body. Python load processes
(one persistent http.client connection each) send the same requests to both: a batch of EVENTS_PER_BATCH
events from one of many visitors, with the shop's Origin, as the snippet's sendBeacon does. Our endpoint
checks the key and origin, counts the request against the per-IP and per-visitor limits (per process, added
to the shared counters in the database, or Redis with --redis, about once a second), validates every event
and stores it; the bare one does none of that. Afterwards the database must hold exactly EVENTS_PER_BATCH
events per accepted request, or a FAIL line is printed and the exit status is 1. Rate limits are raised out
of the way (every request comes from 127.0.0.1).

The snippet's size is reported raw, minified as the service serves it (app/storefront/minify.py strips
whitespace and comments and shortens the script's own long local names) and minified+gzip (what travels
when the client accepts gzip).
The last line printed is `ratio=<ours/bare events/s> baseline=<bare events/s> ours=<accepted events/s>`.
"""
from __future__ import annotations

import argparse
import gzip
import http.client
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402

from app.db import make_engine  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from bench.support import HOST, GunicornServer, say  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
SHOP_DOMAIN = "bench-shop.example.pl"
ORIGIN = f"https://{SHOP_DOMAIN}"
EVENTS_PATH, BARE_PATH = "/s/events", "/bench/bare"
EVENTS_PER_BATCH = 5
ROUNDS = 3
SNIPPET = ROOT / "app" / "storefront" / "static" / "snippet.js"


def batch_body(visitor: str, n: int) -> bytes:
    now_ms = int(time.time() * 1000)
    events = [{"type": "page_view", "url": f"{ORIGIN}/", "ts": now_ms, "referrer": "https://www.google.com/"},
              {"type": "product_view", "url": f"{ORIGIN}/product/mug", "product_id": str(12 + n % 50), "title": "Kubek", "ts": now_ms},
              {"type": "page_view", "url": f"{ORIGIN}/category/kubki?page={n % 7}", "ts": now_ms},
              {"type": "add_to_cart", "url": f"{ORIGIN}/product/mug", "product_id": "12", "variant_id": "4001", "quantity": 1,
               "price": 2999, "ts": now_ms},
              {"type": "page_view", "url": f"{ORIGIN}/cart", "ts": now_ms}]
    assert len(events) == EVENTS_PER_BATCH
    return json.dumps({"visitor_id": visitor, "events": events}).encode()


# --- the load client -----------------------------------------------------------------------------------

def _client_process(port: int, path: str, key: str, index: int, duration: float, ready, start, results) -> None:
    headers = {"Content-Type": "text/plain;charset=UTF-8", "Origin": ORIGIN}
    bodies = [batch_body(f"benchvisitor{index:04d}{n:08d}", n) for n in range(500)]
    target = f"{path}?k={key}"
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    accepted = other = errors = 0
    ready.release()
    start.wait()
    began = time.perf_counter()
    deadline = began + duration
    n = 0
    while time.perf_counter() < deadline:
        try:
            connection.request("POST", target, bodies[n % len(bodies)], headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            connection.close()
            continue
        n += 1
        if response.status == 202:
            accepted += 1
        else:
            other += 1
    ended = time.perf_counter()
    connection.close()
    results.put(dict(began=began, ended=ended, accepted=accepted, other=other, errors=errors))


def run_load(port: int, path: str, key: str, duration: float, connections: int) -> dict:
    context = multiprocessing.get_context("fork")
    ready, start, results = context.Semaphore(0), context.Event(), context.Queue()
    processes = [context.Process(target=_client_process, daemon=True,
                                 args=(port, path, key, i, duration, ready, start, results)) for i in range(connections)]
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire()
    start.set()
    parts = [results.get(timeout=duration + 120) for _ in processes]
    for process in processes:
        process.join(timeout=10)
    elapsed = max(p["ended"] for p in parts) - min(p["began"] for p in parts)
    return dict(elapsed=elapsed, accepted=sum(p["accepted"] for p in parts), other=sum(p["other"] for p in parts),
                errors=sum(p["errors"] for p in parts))


# --- the server ----------------------------------------------------------------------------------------

def create_shop(env: dict[str, str]) -> str:
    from app.config import Settings
    from app.runtime import build_runtime
    from tests.factories import make_shop

    runtime = build_runtime(Settings.from_env(env))
    try:
        with runtime.sessions.begin() as session:
            return make_shop(session, SHOP_DOMAIN, platform="woocommerce").public_key
    finally:
        runtime.close()


def warm_up(port: int, key: str) -> None:
    for path in (BARE_PATH, EVENTS_PATH) * 5:
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        connection.request("POST", f"{path}?k={key}", batch_body("benchwarmupvisitor0001", 0),
                           {"Origin": ORIGIN, "Content-Type": "text/plain;charset=UTF-8"})
        response = connection.getresponse()
        data = response.read()
        connection.close()
        if response.status != 202:
            raise RuntimeError(f"a warm-up request to {path} was not accepted: HTTP {response.status} {data[:300]!r}")


def stored_events(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM storefront_events")).scalar_one()
    finally:
        engine.dispose()


# --- the snippet's size ----------------------------------------------------------------------------------

def snippet_sizes() -> tuple[int, int, int]:
    """Raw source, as served (app/storefront/minify.py: whitespace, comments, long local names), and served+gzip."""
    from app.storefront.minify import minify_js, rename_locals

    raw = SNIPPET.read_text()
    small = rename_locals(minify_js(raw)).encode()
    return len(raw.encode()), len(small), len(gzip.compress(small, 9))


# --- main --------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 s per endpoint: a smoke run")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds of load per endpoint (default 15)")
    parser.add_argument("--connections", type=int, default=8, help="load client processes (default 8)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (default 2, as WEB_CONCURRENCY)")
    parser.add_argument("--web-threads", type=int, default=1,
                        help="threads per gunicorn worker (default 1 = sync workers, as the Procfile; >1 = gthread)")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL database instead of SQLite")
    parser.add_argument("--redis", action="store_true", help="rate-limit counters in Redis (BENCH_REDIS_URL) instead of the database")
    options = parser.parse_args()
    duration = 3.0 if options.quick else options.seconds

    raw, small, zipped = snippet_sizes()
    say(f"snippet.js: {raw} bytes raw, {small} bytes minified, {zipped} bytes minified+gzip")

    scratch = Path(tempfile.mkdtemp(prefix="bench-storefront-"))
    admin = database_name = None
    server = None
    failed = False
    try:
        if options.postgres:
            database_name = f"bench_storefront_{uuid.uuid4().hex[:10]}"
            admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{database_name}"'))
            database_url = ADMIN_URL.rsplit("/", 1)[0] + "/" + database_name
        else:
            database_url = f"sqlite:///{scratch / 'companion.db'}"
        engine = make_engine(database_url)
        upgrade(engine)
        engine.dispose()
        env = {**os.environ, "DATABASE_URL": database_url, "INSTANCE_DIR": str(scratch / "instance"),
               "FERNET_KEYS": Fernet.generate_key().decode(), "SECRET_KEY": "bench", "APP_ENV": "test",
               "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
               "STOREFRONT_IP_REQUESTS_PER_MINUTE": "1000000000", "STOREFRONT_VISITOR_REQUESTS_PER_MINUTE": "1000000000",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        env.pop("REDIS_URL", None)
        if options.redis:
            env["REDIS_URL"] = REDIS_URL
        key = create_shop(env)
        server = GunicornServer(env, options.web_workers, scratch / "gunicorn.log", threads=options.web_threads,
                                bare_status=202)
        server.wait_ready()
        warm_up(server.port, key)
        before = stored_events(database_url)
        say(f"gunicorn: {options.web_workers} workers x {options.web_threads} threads on {HOST}:{server.port}, "
            f"{'PostgreSQL' if options.postgres else 'SQLite'}, rate limits in {'Redis' if options.redis else 'the database'}; "
            f"{options.connections} client processes, {duration:.0f}s per endpoint in {ROUNDS} alternating rounds, "
            f"{EVENTS_PER_BATCH} events a request")

        # Alternating rounds: a neighbour's load on the machine weighs on both figures alike.
        totals = {BARE_PATH: dict(elapsed=0.0, accepted=0, other=0, errors=0), EVENTS_PATH: dict(elapsed=0.0, accepted=0, other=0, errors=0)}
        for _ in range(ROUNDS):
            for path in (BARE_PATH, EVENTS_PATH):
                result = run_load(server.port, path, key, duration / ROUNDS, options.connections)
                for field in totals[path]:
                    totals[path][field] += result[field]
        bare, ours = totals[BARE_PATH], totals[EVENTS_PATH]
        bare_rate = bare["accepted"] * EVENTS_PER_BATCH / bare["elapsed"]
        say(f"bare Flask endpoint: {bare['accepted'] / bare['elapsed']:.0f} req/s = {bare_rate:.0f} events/s "
            f"(other {bare['other']}, errors {bare['errors']})")
        ours_rate = ours["accepted"] * EVENTS_PER_BATCH / ours["elapsed"]
        say(f"/s/events: {ours['accepted'] / ours['elapsed']:.0f} req/s = {ours_rate:.0f} events/s accepted "
            f"(other {ours['other']}, errors {ours['errors']})")

        stored = stored_events(database_url) - before
        expected = ours["accepted"] * EVENTS_PER_BATCH
        if stored != expected or ours["other"] or ours["errors"]:
            failed = True
            say(f"FAIL: {ours['accepted']} accepted requests should have stored {expected} events; the database holds {stored} "
                f"(non-202 answers {ours['other']}, connection errors {ours['errors']})")
        else:
            say(f"check: all {stored} accepted events are stored")
        say(f"ratio={ours_rate / bare_rate:.3f} baseline={bare_rate:.1f} ours={ours_rate:.1f}")
    finally:
        if server is not None:
            server.stop()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)'))
            admin.dispose()
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
