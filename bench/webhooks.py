"""Signed Shopify webhooks against gunicorn on loopback: accepted webhooks/s and p99 latency, each as a ratio to a bare Flask endpoint on the same server in the same run.

Usage (from the project root, with the project's virtualenv):
    python bench/webhooks.py                 # 20 s of load per endpoint, SQLite in a throwaway INSTANCE_DIR
    python bench/webhooks.py --quick         # 3 s per endpoint: a smoke run
    python bench/webhooks.py --postgres      # a throwaway PostgreSQL database at BENCH_POSTGRES_URL instead
    python bench/webhooks.py --client python # the Python load client even when wrk is installed

gunicorn serves bench/bare_wsgi.py (2 sync workers by default, as the Procfile; no access log, no
--max-requests): `/webhooks/shopify` is our app, `/bench/bare` an empty Flask view returning 200. The load
client is wrk when it is on PATH (a Lua script gives every request a unique X-Shopify-Webhook-Id and order
id, and signs each body with HMAC-SHA256), else Python processes with persistent http.client connections
and pre-signed unique requests; the same client and the same requests (only the path differs) are used for
both endpoints. Afterwards every accepted webhook must have been stored once and ingested once: the inbox
holds as many events as there were "accepted" answers, `python -m app worker` processes run every ingest
job to success, and as many distinct orders exist as webhooks were accepted. Otherwise a FAIL line is
printed and the exit status is 1.
The last line printed is `ratio=<ours/bare throughput> baseline=<bare req/s> ours=<accepted webhooks/s>`.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import math
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import text  # noqa: E402

from app.db import make_engine  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from bench.support import HOST, GunicornServer, say, throwaway_postgres  # noqa: E402

SHOP_DOMAIN = "bench-shop.myshopify.com"
API_KEY, API_SECRET = "bench-client-id", "shpss_bench_secret"
WEBHOOK_PATH, BARE_PATH = "/webhooks/shopify", "/bench/bare"
ID_PLACEHOLDER = 987654321987654  # the order id in the body template, replaced per request


def signature(body: bytes) -> str:
    return base64.b64encode(hmac.new(API_SECRET.encode(), body, hashlib.sha256).digest()).decode()


def body_template() -> bytes:
    """An orders/create body shaped like Shopify's (tests/shopify_payloads.py), its order id a placeholder."""
    from tests import shopify_payloads

    raw = shopify_payloads.raw(shopify_payloads.order(order_id=ID_PLACEHOLDER))
    assert raw.count(str(ID_PLACEHOLDER).encode()) == 2  # "id" and "admin_graphql_api_id"
    return raw


def webhook_request(template: bytes, order_id: int, webhook_id: str) -> tuple[bytes, dict[str, str]]:
    body = template.replace(str(ID_PLACEHOLDER).encode(), str(order_id).encode())
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": "orders/create",
        "X-Shopify-Shop-Domain": SHOP_DOMAIN,
        "X-Shopify-Webhook-Id": webhook_id,
        "X-Shopify-Event-Id": webhook_id,
        "X-Shopify-Triggered-At": "2026-11-20T09:00:00.000Z",
        "X-Shopify-API-Version": "2026-01",
        "X-Shopify-Hmac-Sha256": signature(body),
    }
    return body, headers


def is_accepted(status: int, data: bytes) -> bool:
    return status == 200 and b'"accepted"' in data


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values), max(1, math.ceil(fraction * len(sorted_values)))) - 1  # nearest rank
    return sorted_values[index]


# --- the Python load client ------------------------------------------------------------------------

def _python_client_process(port: int, path: str, template: bytes, first_id: int, count: int, prefix: str,
                           ready, start, duration: float, results) -> None:
    requests = [webhook_request(template, first_id + n, f"{prefix}-{n}") for n in range(count)]
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    latencies: list[float] = []
    ok = accepted = other = errors = 0
    ready.release()
    start.wait()
    began = time.perf_counter()
    deadline = began + duration
    for body, headers in requests:
        sent = time.perf_counter()
        if sent >= deadline:
            break
        try:
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            connection.close()
            continue
        latencies.append(time.perf_counter() - sent)
        if response.status == 200:
            ok += 1
            accepted += is_accepted(response.status, data)
        else:
            other += 1
    ended = time.perf_counter()
    connection.close()
    results.put(dict(began=began, ended=ended, ok=ok, accepted=accepted, other=other, errors=errors,
                     latencies=latencies, exhausted=len(latencies) + errors >= len(requests)))


def run_python_client(port: int, path: str, template: bytes, duration: float, connections: int,
                      first_id: int, prefix: str, ceiling_rate: float) -> dict:
    """`connections` processes, each with one persistent connection and its own pre-signed requests."""
    context = multiprocessing.get_context("fork")
    per_process = int(duration * ceiling_rate / connections) + 50
    ready, start, results = context.Semaphore(0), context.Event(), context.Queue()
    processes = [context.Process(target=_python_client_process, daemon=True, args=(
        port, path, template, first_id + i * 100_000_000, per_process, f"{prefix}-{i}", ready, start, duration, results))
        for i in range(connections)]
    for process in processes:
        process.start()
    for _ in processes:
        ready.acquire()  # every request is built and signed before the clock starts
    start.set()
    parts = [results.get(timeout=duration + 120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    elapsed = max(p["ended"] for p in parts) - min(p["began"] for p in parts)
    latencies = sorted(l for p in parts for l in p["latencies"])
    return dict(elapsed=elapsed, ok=sum(p["ok"] for p in parts), accepted=sum(p["accepted"] for p in parts),
                other=sum(p["other"] for p in parts), errors=sum(p["errors"] for p in parts),
                requests=len(latencies), p50=percentile(latencies, 0.50), p99=percentile(latencies, 0.99),
                exhausted=any(p["exhausted"] for p in parts))


# --- the wrk load client ---------------------------------------------------------------------------

WRK_SCRIPT = r"""
-- Generated by bench/webhooks.py: unique, signed Shopify webhooks for wrk (LuaJIT).
local bit = require("bit")
local band, bor, bxor, bnot, rshift, lshift, ror, tobit = bit.band, bit.bor, bit.bxor, bit.bnot, bit.rshift, bit.lshift, bit.ror, bit.tobit
local byte, char, rep, format, concat = string.byte, string.char, string.rep, string.format, table.concat

local PATH, SECRET, PREFIX, FIRST_ID = "@PATH@", "@SECRET@", "@PREFIX@", @FIRST_ID@
local PLACEHOLDER, ACCEPT_MARK = "@PLACEHOLDER@", '"accepted"'
local SELFTEST_INPUT, SELFTEST_EXPECTED = "@SELFTEST_INPUT@", "@SELFTEST_EXPECTED@"
local TEMPLATE = [==[@TEMPLATE@]==]

local K = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
}
for i = 1, 64 do K[i] = tobit(K[i]) end
local INIT = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19}
for i = 1, 8 do INIT[i] = tobit(INIT[i]) end

local w = {}
local function compress(H, s, i)
  for j = 0, 15 do
    local a, b, c, d = byte(s, i + j * 4, i + j * 4 + 3)
    w[j] = bor(lshift(a, 24), lshift(b, 16), lshift(c, 8), d)
  end
  for j = 16, 63 do
    local v15, v2 = w[j - 15], w[j - 2]
    local s0 = bxor(ror(v15, 7), ror(v15, 18), rshift(v15, 3))
    local s1 = bxor(ror(v2, 17), ror(v2, 19), rshift(v2, 10))
    w[j] = tobit(w[j - 16] + s0 + w[j - 7] + s1)
  end
  local a, b, c, d, e, f, g, h = H[1], H[2], H[3], H[4], H[5], H[6], H[7], H[8]
  for j = 0, 63 do
    local S1 = bxor(ror(e, 6), ror(e, 11), ror(e, 25))
    local ch = bxor(band(e, f), band(bnot(e), g))
    local t1 = h + S1 + ch + K[j + 1] + w[j]
    local S0 = bxor(ror(a, 2), ror(a, 13), ror(a, 22))
    local maj = bxor(band(a, b), band(a, c), band(b, c))
    h, g, f, e, d, c, b, a = g, f, e, tobit(d + t1), c, b, a, tobit(t1 + S0 + maj)
  end
  H[1], H[2], H[3], H[4] = tobit(H[1] + a), tobit(H[2] + b), tobit(H[3] + c), tobit(H[4] + d)
  H[5], H[6], H[7], H[8] = tobit(H[5] + e), tobit(H[6] + f), tobit(H[7] + g), tobit(H[8] + h)
end

-- Continue the hash state H (which has already absorbed `before` bytes, a multiple of 64) with `m`, and finish.
local function finish(H, m, before)
  local bits = (before + #m) * 8
  local padded = m .. "\128" .. rep("\0", (55 - #m) % 64)
    .. char(0, 0, 0, 0, band(rshift(bits, 24), 255), band(rshift(bits, 16), 255), band(rshift(bits, 8), 255), band(bits, 255))
  for i = 1, #padded, 64 do compress(H, padded, i) end
  local out = {}
  for i = 1, 8 do
    local x = H[i]
    out[i] = char(band(rshift(x, 24), 255), band(rshift(x, 16), 255), band(rshift(x, 8), 255), band(x, 255))
  end
  return concat(out)
end

local function padded_key(pad)
  local key = SECRET .. rep("\0", 64 - #SECRET)
  local out = {}
  for i = 1, 64 do out[i] = char(bxor(byte(key, i), pad)) end
  local H = {unpack(INIT)}
  compress(H, concat(out), 1)
  return H
end
local INNER, OUTER = padded_key(0x36), padded_key(0x5c)

local function hmac_sha256(m)
  return finish({unpack(OUTER)}, finish({unpack(INNER)}, m, 64), 64)
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1, c2 = rshift(n, 18) + 1, band(rshift(n, 12), 63) + 1
    local c3, c4 = band(rshift(n, 6), 63) + 1, band(n, 63) + 1
    out[#out + 1] = B64:sub(c1, c1) .. B64:sub(c2, c2) .. (b and B64:sub(c3, c3) or "=") .. (c and B64:sub(c4, c4) or "=")
  end
  return concat(out)
end

local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  threads[#threads + 1] = thread
end

function init(args)
  if base64(hmac_sha256(SELFTEST_INPUT)) ~= SELFTEST_EXPECTED then
    io.stderr:write("wrk script: HMAC-SHA256 self-test failed\n")
    os.exit(3)
  end
  counter, ok, accepted, other = 0, 0, 0, 0
end

function request()
  local n = counter
  counter = counter + 1
  local order_id = format("%.0f", FIRST_ID + tid * 100000000 + n)
  local body = TEMPLATE:gsub(PLACEHOLDER, order_id)
  local webhook_id = PREFIX .. "-" .. tid .. "-" .. n
  return wrk.format("POST", PATH, {
    ["Content-Type"] = "application/json",
    ["X-Shopify-Topic"] = "orders/create",
    ["X-Shopify-Shop-Domain"] = "@SHOP@",
    ["X-Shopify-Webhook-Id"] = webhook_id,
    ["X-Shopify-Event-Id"] = webhook_id,
    ["X-Shopify-Triggered-At"] = "2026-11-20T09:00:00.000Z",
    ["X-Shopify-API-Version"] = "2026-01",
    ["X-Shopify-Hmac-Sha256"] = base64(hmac_sha256(body)),
  }, body)
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
    if body and body:find(ACCEPT_MARK, 1, true) then accepted = accepted + 1 end
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local total_ok, total_accepted, total_other = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_ok = total_ok + thread:get("ok")
    total_accepted = total_accepted + thread:get("accepted")
    total_other = total_other + thread:get("other")
  end
  local e = summary.errors
  io.write(format("BENCH requests=%d duration_us=%d ok=%d accepted=%d other=%d errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, total_ok, total_accepted, total_other,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_script(path: str, template: bytes, first_id: int, prefix: str) -> str:
    selftest = "The quick brown fox jumps over the lazy dog " * 3
    values = {"PATH": path, "SECRET": API_SECRET, "PREFIX": prefix, "FIRST_ID": str(first_id),
              "PLACEHOLDER": str(ID_PLACEHOLDER), "SELFTEST_INPUT": selftest,
              "SELFTEST_EXPECTED": signature(selftest.encode()), "SHOP": SHOP_DOMAIN,
              "TEMPLATE": template.decode("ascii")}
    assert "]==]" not in values["TEMPLATE"]
    return re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], WRK_SCRIPT)


def run_wrk(port: int, path: str, template: bytes, duration: float, connections: int, threads: int,
            first_id: int, prefix: str, scratch: Path) -> dict:
    script = scratch / f"wrk-{prefix}.lua"
    script.write_text(wrk_script(path, template, first_id, prefix))
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "30s",
               "-s", str(script), f"http://{HOST}:{port}{path}"]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=duration + 120)
    match = re.search(r"^BENCH (.*)$", finished.stdout, re.MULTILINE)
    if finished.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed (exit {finished.returncode}):\n{finished.stdout}\n{finished.stderr}")
    figures = {key: int(value) for key, value in (pair.split("=") for pair in match.group(1).split())}
    return dict(elapsed=figures["duration_us"] / 1e6, ok=figures["ok"], accepted=figures["accepted"],
                other=figures["other"], errors=figures["errors"], requests=figures["requests"],
                p50=figures["p50_us"] / 1e6, p99=figures["p99_us"] / 1e6, exhausted=False)


# --- the server and the database -------------------------------------------------------------------

def warm_up(port: int, template: bytes, count: int, prefix: str, first_id: int) -> int:
    """A few requests to each endpoint so both workers have connected and imported everything; returns accepted."""
    accepted = 0
    for n in range(count):
        for path in (BARE_PATH, WEBHOOK_PATH):
            body, headers = webhook_request(template, first_id + n, f"{prefix}-{n}")
            connection = http.client.HTTPConnection(HOST, port, timeout=30)
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            data = response.read()
            connection.close()
            if path == WEBHOOK_PATH:
                if not is_accepted(response.status, data):
                    raise RuntimeError(f"a warm-up webhook was not accepted: HTTP {response.status} {data[:300]!r}")
                accepted += 1
    return accepted


def create_shop(env: dict[str, str]) -> int:
    from app.config import Settings
    from app.runtime import build_runtime
    from tests.factories import make_shop

    runtime = build_runtime(Settings.from_env(env))
    try:
        with runtime.sessions.begin() as session:
            return make_shop(session, SHOP_DOMAIN, credentials={"access_token": "shpat_bench"}).id
    finally:
        runtime.close()


def count_rows(engine, sql: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar_one()


def run_ingest_workers(env: dict[str, str], scratch: Path, count: int) -> tuple[float, list[int], list[Path]]:
    """`count` `python -m app worker --exit-when-idle` processes; returns (seconds, exit codes, logs)."""
    started = time.perf_counter()
    processes, logs = [], []
    for index in range(count):
        log_path = scratch / f"worker-{index}.log"
        with log_path.open("wb") as log_file:
            processes.append(subprocess.Popen([sys.executable, "-m", "app", "worker", "--exit-when-idle"], cwd=ROOT,
                                              env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True))
        logs.append(log_path)
    codes = []
    for process in processes:
        try:
            codes.append(process.wait(timeout=3600))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            codes.append(process.wait())
    return time.perf_counter() - started, codes, logs


def verify(engine, accepted: int, in_flight: int) -> list[str]:
    """Every accepted webhook stored once, its ingest job succeeded once, one order per webhook.

    wrk stops reading when its time is up, so up to one request per connection may have been accepted and
    stored with nobody reading the answer: `in_flight` events beyond the accepted answers are allowed (and
    must have been ingested like the others); the Python client always reads its last answer (in_flight 0).
    """
    problems = []
    events = count_rows(engine, "SELECT count(*) FROM inbound_events")
    processed = count_rows(engine, "SELECT count(*) FROM inbound_events WHERE status = 'processed'")
    jobs = count_rows(engine, "SELECT count(*) FROM jobs WHERE kind = 'shopify.ingest_event'")
    succeeded = count_rows(engine, "SELECT count(*) FROM jobs WHERE kind = 'shopify.ingest_event' AND status = 'succeeded'")
    retried = count_rows(engine, "SELECT count(*) FROM jobs WHERE kind = 'shopify.ingest_event' AND attempts <> 1")
    orders = count_rows(engine, "SELECT count(*) FROM orders")
    distinct = count_rows(engine, "SELECT count(DISTINCT platform_id) FROM orders")
    say(f"check: accepted answers {accepted}, inbox events {events} (processed {processed}), ingest jobs {jobs} "
        f"(succeeded {succeeded}, not at the first attempt {retried}), orders {orders} (distinct {distinct})")
    if not accepted <= events <= accepted + in_flight:
        problems.append(f"{events} inbox events for {accepted} accepted webhooks "
                        f"(at most {in_flight} more may have been in flight when the client stopped)")
    elif events > accepted:
        say(f"check: {events - accepted} webhooks were stored while the client stopped reading "
            f"(in flight at the end; at most {in_flight} allowed), and must be ingested like the others")
    if jobs != events or succeeded != events:
        problems.append(f"{succeeded} of {jobs} ingest jobs succeeded for {events} stored webhooks")
    if processed != events:
        problems.append(f"{processed} events processed of {events} stored")
    if orders != events or distinct != events:
        problems.append(f"{orders} orders ({distinct} distinct) for {events} stored webhooks")
    if retried:
        problems.append(f"{retried} ingest jobs needed more than one attempt")
    return problems


# --- main ------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 s of load per endpoint: a smoke run")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load per endpoint (default 20)")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL database at BENCH_POSTGRES_URL")
    parser.add_argument("--client", choices=("auto", "wrk", "python"), default="auto",
                        help="load client: wrk when on PATH (auto), or the Python one")
    parser.add_argument("--connections", type=int, default=4, help="concurrent connections (default 4)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (default 2, as WEB_CONCURRENCY)")
    parser.add_argument("--web-threads", type=int, default=1,
                        help="threads per gunicorn worker (default 1 = sync workers, as the Procfile; >1 = gthread)")
    parser.add_argument("--ingest-workers", type=int, default=2, help="worker processes that ingest afterwards (default 2)")
    options = parser.parse_args()
    duration = 3.0 if options.quick else options.duration
    client = options.client if options.client != "auto" else ("wrk" if shutil.which("wrk") else "python")
    if client == "wrk" and not shutil.which("wrk"):
        parser.error("--client wrk: wrk is not on PATH")

    run_started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    database_cleanup = ExitStack()
    engine = server = None
    name = None
    try:
        if options.postgres:
            url = database_cleanup.enter_context(throwaway_postgres("bench_webhooks"))
            name = url.rsplit("/", 1)[1]
        else:
            url = f"sqlite:///{scratch / 'instance' / 'companion.db'}"
        engine = make_engine(url)
        upgrade(engine)
        env = {**os.environ, "DATABASE_URL": url, "INSTANCE_DIR": str(scratch / "instance"),
               "FERNET_KEYS": Fernet.generate_key().decode(), "SECRET_KEY": secrets.token_hex(16),
               "APP_ENV": "production", "SHOPIFY_API_KEY": API_KEY, "SHOPIFY_API_SECRET": API_SECRET,
               "JOB_POLL_INTERVAL_SECONDS": "0.05", "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        for variable in ("JOB_EXECUTOR", "CELERY_BROKER_URL", "CELERY_QUEUE", "EXTRA_JOB_MODULES",
                         "SHOPIFY_PREVIOUS_API_SECRET", "SHOPIFY_ADMIN_BASE_URL", "WEB_CONCURRENCY"):
            env.pop(variable, None)
        create_shop(env)
        template = body_template()

        server = GunicornServer(env, options.web_workers, scratch / "gunicorn.log", threads=options.web_threads)
        server.wait_ready()
        run = uuid.uuid4().hex[:8]
        accepted_total = warm_up(server.port, template, 10, f"warm-{run}", first_id=10**12)
        database = f"PostgreSQL ({name})" if options.postgres else "SQLite (WAL)"
        say(f"gunicorn: {options.web_workers} workers x {options.web_threads} threads on {HOST}:{server.port}, database {database}; "
            f"load client {client}, {options.connections} connections, {duration:.0f} s per endpoint; "
            f"body {len(template)} bytes, orders/create")

        def load(path: str, first_id: int, prefix: str) -> dict:
            if client == "wrk":
                return run_wrk(server.port, path, template, duration, options.connections,
                               min(2, options.connections), first_id, prefix, scratch)
            return run_python_client(server.port, path, template, duration, options.connections, first_id, prefix,
                                     ceiling_rate=6000.0)

        bare = load(BARE_PATH, 2 * 10**12, f"bare-{run}")
        bare_rate = bare["ok"] / bare["elapsed"]
        say(f"bare Flask 200: {bare_rate:.1f} req/s ({bare['ok']} answered 200 in {bare['elapsed']:.2f}s, "
            f"{bare['other']} other statuses, {bare['errors']} socket errors), "
            f"p50 {bare['p50'] * 1000:.2f} ms, p99 {bare['p99'] * 1000:.2f} ms")
        ours = load(WEBHOOK_PATH, 3 * 10**12, f"ours-{run}")
        ours_rate = ours["accepted"] / ours["elapsed"]
        accepted_total += ours["accepted"]
        say(f"our webhook endpoint: {ours_rate:.1f} accepted webhooks/s ({ours['accepted']} accepted of "
            f"{ours['requests']} answered in {ours['elapsed']:.2f}s, {ours['ok'] - ours['accepted']} other 200s, "
            f"{ours['other']} other statuses, {ours['errors']} socket errors), "
            f"p50 {ours['p50'] * 1000:.2f} ms, p99 {ours['p99'] * 1000:.2f} ms")
        if bare["exhausted"] or ours["exhausted"]:
            say("note: a Python client process used up its pre-signed requests before the time was up")
        server.stop()

        elapsed, codes, logs = run_ingest_workers(env, scratch, options.ingest_workers)
        say(f"ingest: {options.ingest_workers} worker processes ran {accepted_total} ingest jobs in {elapsed:.2f}s "
            f"({accepted_total / elapsed:.1f} jobs/s including start-up), exit codes {codes}")
        problems = verify(engine, accepted_total, options.connections if client == "wrk" else 0)
        if any(codes):
            problems.append(f"ingest workers exited with {codes}")
        if ours["other"] or ours["errors"]:
            problems.append(f"{ours['other']} webhooks answered non-200 and {ours['errors']} failed at the socket")

        ratio = ours_rate / bare_rate
        p99_ratio = ours["p99"] / bare["p99"]
        say(f"throughput ratio {ratio:.3f} (target >= 0.5: {'met' if ratio >= 0.5 else 'NOT met'})")
        for problem in problems:
            say(f"FAIL: {problem}")
        if problems:
            for log_path in [server.log_path, *logs]:
                tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
                print(f"--- {log_path.name} ---\n{tail}", file=sys.stderr)
        print(f"benchmark ran {time.perf_counter() - run_started:.1f}s", file=sys.stderr)
        say(f"p99_ours_ms={ours['p99'] * 1000:.2f} p99_bare_ms={bare['p99'] * 1000:.2f} p99_ratio={p99_ratio:.3f}")
        say(f"ratio={ratio:.3f} baseline={bare_rate:.1f} ours={ours_rate:.1f}")
        return 1 if problems else 0
    finally:
        if server is not None:
            server.stop()
        if engine is not None:
            engine.dispose()
        database_cleanup.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
