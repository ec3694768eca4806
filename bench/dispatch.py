"""Outbox dispatch: emails through the outbox into an aiosmtpd sink with 2 workers, as a ratio to a bare smtplib loop; web pushes as a ratio to a bare pywebpush loop.

Usage (from the project root, with the project's virtualenv):
    python bench/dispatch.py             # 10,000 emails and 2,000 pushes, SQLite in a scratch folder
    python bench/dispatch.py --quick     # 1,000 emails and 200 pushes: a smoke run
    python bench/dispatch.py --postgres  # on a throwaway PostgreSQL database (BENCH_POSTGRES_URL)

Email: the baseline renders the same messages first (not timed), then sends them on one reused smtplib connection
in one loop. Ours starts 2 `python -m app worker` processes and lets each send a warm-up message (process start-up
is a fixed cost, reported on its own line), then schedules the messages in one transaction; the clock starts right
before that transaction commits and stops when every row is `sent`: for every message its gates, rendering, its
`sending` mark committed before the SMTP call, the call and the outcome. The rows are watched every 0.1 s through
a plain engine whose reads never wait for (or hold up) the workers' SQLite writer lock.
Push: the baseline is pywebpush's `webpush()` called in a loop without a session (a new connection per push, as
most callers do); ours goes through the outbox with 2 workers, each reusing its connections.
The sink and the push service run in processes of their own. The last line printed is
`ratio=<email ours/baseline> baseline=<bare smtplib msg/s> ours=<outbox msg/s> push_ratio=<ours/bare pywebpush>`.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.fernet import Fernet  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

from app import crypto  # noqa: E402
from bench.support import free_port, say  # noqa: E402
from app.db import make_engine  # noqa: E402
from app.jobs.catalog import load_job_kinds  # noqa: E402
from app.messaging.outbox import schedule_message  # noqa: E402
from app.messaging.render import Brand, render_message  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.models import Message, PushSubscription, Shop  # noqa: E402
from app.notifiers.base import Envelope  # noqa: E402
from app.notifiers.email import EmailNotifier, SmtpRelay  # noqa: E402
from app.tenancy import shop_context  # noqa: E402

ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
WORKERS = 2
CONTEXT = {"order_number": "#1042", "courier": "InPost", "tracking_number": "620000111",
           "tracking_url": "https://inpost.pl/sledzenie?number=620000111", "shipped_at": "2026-06-10T08:00:00+00:00",
           "first_name": "Marta"}


def _serve_smtp(port: int, counter, ready) -> None:
    from tests.messaging_fakes import SmtpSink

    sink = SmtpSink()
    sink.port = port
    from aiosmtpd.controller import Controller

    class Counting:
        async def handle_DATA(self, server, session, envelope):
            with counter.get_lock():
                counter.value += 1
            return "250 OK"

    controller = Controller(Counting(), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    signal.sigwait([signal.SIGTERM])
    controller.stop()


def _serve_push(port_value, counter, ready) -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            return

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with counter.get_lock():
                counter.value += 1
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_value.value = server.server_address[1]
    ready.set()
    server.serve_forever()


def start_workers(env: dict[str, str], scratch: Path) -> list[subprocess.Popen]:
    processes = []
    for n in range(WORKERS):
        log = (scratch / f"worker-{n}.log").open("wb")
        processes.append(subprocess.Popen([sys.executable, "-m", "app", "worker", "--batch-size", "32"], cwd=ROOT,
                                          env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
    return processes


def stop_workers(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def observer_engine(url: str):
    """An engine for watching the rows only: unlike the app's, its reads never take SQLite's writer lock (they would
    hold up the workers' commits at every poll, a cost the bare loops do not carry)."""
    return create_engine(url)


def wait_all_sent(engine, channel: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            done = conn.execute(select(func.count()).select_from(Message.__table__).where(
                Message.__table__.c.channel == channel, Message.__table__.c.status.in_(("sent", "failed", "unknown"))
            )).scalar_one()
        if done >= count:
            return
        time.sleep(0.1)
    raise SystemExit(f"only {done} of {count} {channel} messages settled within {timeout:.0f}s")


def warm_up(observer, sessions, shop_id, env, channel: str, schedule_one) -> None:
    """Until the workers have imported everything and sent one message each (not timed; printed)."""
    started = time.perf_counter()
    with sessions.begin() as session, shop_context(shop_id):
        for n in range(WORKERS):
            schedule_one(session, n)
    wait_all_sent(observer, channel, WORKERS, timeout=120)
    say(f"{WORKERS} workers started and sent a warm-up {channel} message each in {time.perf_counter() - started:.2f}s")


def bare_smtplib(port: int, count: int) -> float:
    notifier = EmailNotifier(SmtpRelay(host="127.0.0.1", port=port, from_address="sklep@shop.example.pl"))
    rendered = [render_message("order_shipped", "pl", CONTEXT, brand=Brand(name="Sklep"), timezone="Europe/Warsaw")
                for _ in range(count)]
    # The bytes our notifier would put on the wire for the same rendered message.
    raws = [notifier.raw_message(Envelope("email", f"c{n}@example.pl", "k", subject=r.subject, text=r.text,
                                          html=r.html)) for n, r in enumerate(rendered)]
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as conn:
        for n, raw in enumerate(raws):
            conn.sendmail("sklep@shop.example.pl", [f"c{n}@example.pl"], raw)
    return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--emails", type=int, default=10_000)
    parser.add_argument("--pushes", type=int, default=2_000)
    options = parser.parse_args()
    emails, pushes = (1_000, 200) if options.quick else (options.emails, options.pushes)
    scratch = Path(tempfile.mkdtemp(prefix="bench-dispatch-"))
    admin = None
    if options.postgres:
        name = f"bench_dispatch_{uuid.uuid4().hex[:10]}"
        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    else:
        url = f"sqlite:///{scratch / 'companion.db'}"
    engine = make_engine(url)
    upgrade(engine)
    observer = observer_engine(url)
    fernet = Fernet.generate_key().decode()
    crypto.configure_keys([fernet])
    load_job_kinds()

    smtp_port = free_port()
    sent_count = multiprocessing.Value("i", 0)
    push_count = multiprocessing.Value("i", 0)
    push_port = multiprocessing.Value("i", 0)
    smtp_ready, push_ready = multiprocessing.Event(), multiprocessing.Event()
    smtp_server = multiprocessing.Process(target=_serve_smtp, args=(smtp_port, sent_count, smtp_ready), daemon=True)
    push_server = multiprocessing.Process(target=_serve_push, args=(push_port, push_count, push_ready), daemon=True)
    smtp_server.start()
    push_server.start()
    smtp_ready.wait(10)
    push_ready.wait(10)
    env = {**os.environ, "DATABASE_URL": url, "INSTANCE_DIR": str(scratch / "instance"), "FERNET_KEYS": fernet,
           "SECRET_KEY": "bench", "APP_ENV": "test", "JOB_POLL_INTERVAL_SECONDS": "0.01", "LOG_LEVEL": "WARNING",
           "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port), "EMAIL_FROM": "sklep@shop.example.pl",
           "MESSAGES_PER_SHOP_PER_MINUTE": "10000000", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for variable in ("JOB_EXECUTOR", "CELERY_BROKER_URL", "EXTRA_JOB_MODULES"):
        env.pop(variable, None)
    try:
        baseline = bare_smtplib(smtp_port, emails)
        say(f"bare smtplib, one connection, pre-rendered: {baseline:.1f} msg/s over {emails} emails")

        from sqlalchemy.orm import sessionmaker

        sessions = sessionmaker(bind=engine, expire_on_commit=False)
        with sessions.begin() as session:
            shop = Shop(platform="shopify", domain="bench.myshopify.com", name="Sklep", webhook_token="w", public_key="p",
                        status="active", timezone="Europe/Warsaw", locale="pl", currency="PLN",
                        settings={"quiet_hours": None, "frequency_cap": None})
            session.add(shop)
            session.flush()
            shop_id = shop.id
        workers = start_workers(env, scratch)
        try:
            warm_up(observer, sessions, shop_id, env, "email", lambda session, n: schedule_message(
                session, shop_id=shop_id, channel="email", kind="shipping", template="order_shipped",
                recipient=f"warm{n}@example.pl", context=CONTEXT, dedupe_parts=("warm-up", n)))
            before = sent_count.value
            with sessions() as session, shop_context(shop_id):
                for n in range(emails):
                    schedule_message(session, shop_id=shop_id, channel="email", kind="shipping", template="order_shipped",
                                     recipient=f"c{n}@example.pl", context=CONTEXT, dedupe_parts=("bench", n))
                session.flush()
                started = time.perf_counter()
                session.commit()
            wait_all_sent(observer, "email", emails + WORKERS, timeout=max(120, emails / 5))
            elapsed = time.perf_counter() - started
        finally:
            stop_workers(workers)
        ours = emails / elapsed
        delivered = sent_count.value - before
        say(f"outbox, {WORKERS} workers: {ours:.1f} msg/s ({emails} emails in {elapsed:.2f}s from the commit; "
            f"the sink received {delivered})")
        if delivered != emails:
            raise SystemExit(f"the sink received {delivered} of {emails}: not exactly once")

        push_ratio = push_benchmark(observer, sessions, shop_id, env, scratch, push_port.value, push_count, pushes)
        say(f"ratio={ours / baseline:.3f} baseline={baseline:.1f} ours={ours:.1f} push_ratio={push_ratio:.3f}")
    finally:
        smtp_server.terminate()
        push_server.terminate()
        engine.dispose()
        observer.dispose()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
            admin.dispose()
    return 0


def push_benchmark(observer, sessions, shop_id, env, scratch, port, counter, count) -> float:
    from py_vapid import Vapid02
    from pywebpush import webpush

    from app.notifiers.push import load_or_create_vapid_key
    from tests.messaging_fakes import BrowserSubscription

    origin = f"http://127.0.0.1:{port}"
    browsers = [BrowserSubscription.create(f"{origin}/push/{n}") for n in range(count)]
    vapid: Vapid02 = load_or_create_vapid_key(Path(env["INSTANCE_DIR"]))
    started = time.perf_counter()
    for browser in browsers:
        webpush(browser.info(), '{"title":"Sklep","body":"Paczka w drodze"}', vapid_private_key=vapid,
                vapid_claims={"sub": "mailto:ops@example.pl"}, ttl=3600, timeout=10)
    baseline = count / (time.perf_counter() - started)
    say(f"bare pywebpush loop (no session): {baseline:.1f} pushes/s over {count}")

    with sessions.begin() as session, shop_context(shop_id):
        rows = [PushSubscription(shop_id=shop_id, endpoint=f"{origin}/outbox/{n}", p256dh=b.p256dh, auth=b.auth_b64)
                for n, b in enumerate(browsers)]
        warm_rows = [PushSubscription(shop_id=shop_id, endpoint=f"{origin}/warm/{n}", p256dh=b.p256dh, auth=b.auth_b64)
                     for n, b in enumerate(browsers[:WORKERS])]
        session.add_all(rows + warm_rows)
        session.flush()
        row_ids, warm_ids = [row.id for row in rows], [row.id for row in warm_rows]
    workers = start_workers(env, scratch)
    try:
        warm_up(observer, sessions, shop_id, env, "push", lambda session, n: schedule_message(
            session, shop_id=shop_id, channel="push", kind="shipping", template="order_shipped",
            push_subscription_id=warm_ids[n], context=CONTEXT, dedupe_parts=("warm-up", n)))
        before = counter.value
        with sessions() as session, shop_context(shop_id):
            for row_id in row_ids:
                schedule_message(session, shop_id=shop_id, channel="push", kind="shipping", template="order_shipped",
                                 push_subscription_id=row_id, context=CONTEXT, dedupe_parts=("bench-push", row_id))
            session.flush()
            started = time.perf_counter()
            session.commit()
        wait_all_sent(observer, "push", count + WORKERS, timeout=max(120, count / 5))
        elapsed = time.perf_counter() - started
    finally:
        stop_workers(workers)
    ours = count / elapsed
    say(f"outbox push, {WORKERS} workers: {ours:.1f} pushes/s ({count} in {elapsed:.2f}s from the commit; "
        f"the push service received {counter.value - before})")
    return ours / baseline


if __name__ == "__main__":
    sys.exit(main())
