"""Job throughput on PostgreSQL: no-op jobs through the local executor (2 worker processes) and the celery executor (Redis), as jobs/s and as a ratio to bare `UPDATE ... RETURNING` claims done in one loop.

Usage (from the project root, with the project's virtualenv):
    python bench/jobs.py                 # 20,000 no-op jobs
    python bench/jobs.py --quick         # 1,000 jobs: a smoke run of a few seconds
    python bench/jobs.py --jobs N        # N jobs
    python bench/jobs.py --skip-celery   # the local executor only

Needs PostgreSQL at BENCH_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres);
the celery part runs only when Redis answers at 127.0.0.1:6379. A throwaway database is created and dropped.
The last line printed is `ratio=<local/bare> baseline=<bare claims/s> ours=<local jobs/s>`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
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
from sqlalchemy import func, insert, select, text  # noqa: E402

from bench.support import answers, say, throwaway_postgres  # noqa: E402
from app.db import make_engine  # noqa: E402
from app.jobs.queue import jobs  # noqa: E402
from app.migrate import upgrade  # noqa: E402
from app.models import utcnow  # noqa: E402

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/14"
WORKERS = 2
POLL_SECONDS = 0.2
LEASE_SECONDS = 300  # JOB_LEASE_SECONDS' default, as the workers use it

BARE_CLAIM = text("""
    UPDATE jobs SET status = 'running', attempts = attempts + 1, locked_by = :worker,
                    lease_until = :lease_until, started_at = :now
    WHERE id = (SELECT id FROM jobs WHERE status = 'queued' AND due_at <= :now
                ORDER BY due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING id
""")


# --- the queue table -------------------------------------------------------------------------------

def empty_queue(engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE jobs RESTART IDENTITY"))


def fill_queue(engine, count: int) -> None:
    """Insert `count` due noop jobs with the column values `enqueue` writes, in one transaction."""
    now = utcnow()
    row = dict(kind="noop", shop_id=None, args={}, status="queued", due_at=now, dedupe_key=None,
               attempts=0, max_attempts=8, created_at=now)
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE jobs RESTART IDENTITY"))
        for start in range(0, count, 5000):
            conn.execute(insert(jobs), [row] * min(5000, count - start))
    with engine.connect() as conn:
        conn.execute(text("ANALYZE jobs"))
        conn.commit()


def count_succeeded(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(jobs).where(jobs.c.status == "succeeded")).scalar_one()


def wait_for_succeeded(engine, count: int, timeout: float, workers: list[subprocess.Popen] = ()) -> float:
    """perf_counter() at the first poll that sees `count` succeeded rows."""
    deadline = time.perf_counter() + timeout
    done = 0
    while time.perf_counter() < deadline:
        done = count_succeeded(engine)
        if done >= count:
            return time.perf_counter()
        if workers and all(w.poll() is not None for w in workers):
            done = count_succeeded(engine)
            if done >= count:
                return time.perf_counter()
            raise RuntimeError(f"all workers exited with only {done} of {count} jobs succeeded "
                               f"(exit codes {[w.returncode for w in workers]})")
        time.sleep(POLL_SECONDS)
    raise RuntimeError(f"only {done} of {count} jobs succeeded within {timeout:.0f}s")


def check_each_ran_once(engine, count: int) -> None:
    with engine.connect() as conn:
        by_status = dict(conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all())
        by_attempts = dict(conn.execute(select(jobs.c.attempts, func.count()).group_by(jobs.c.attempts)).all())
    if by_status != {"succeeded": count} or by_attempts != {1: count}:
        raise RuntimeError(f"expected {count} jobs succeeded at the first attempt; "
                           f"statuses {by_status}, attempts {by_attempts}")


# --- worker processes ------------------------------------------------------------------------------

class Workers:
    """`python -m app worker` processes, each in its own session and logging to its own file."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env = env
        self.log_dir = log_dir
        self.started: list[subprocess.Popen] = []

    def start(self, *args: str, **env: str) -> subprocess.Popen:
        log_path = self.log_dir / f"worker-{len(self.started)}.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen([sys.executable, "-m", "app", "worker", *args], cwd=ROOT,
                                       env={**self.env, **env}, stdout=log_file, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        process.log_path = log_path  # type: ignore[attr-defined]
        self.started.append(process)
        return process

    def stop(self, processes: list[subprocess.Popen] | None = None) -> None:
        processes = self.started if processes is None else processes
        for process in processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()

    def tails(self, processes: list[subprocess.Popen], lines: int = 15) -> str:
        out = []
        for process in processes:
            text_ = process.log_path.read_text(errors="replace").splitlines()[-lines:]  # type: ignore[attr-defined]
            out.append(f"--- {process.log_path.name} (exit {process.poll()}) ---\n" + "\n".join(text_))  # type: ignore[attr-defined]
        return "\n".join(out)


# --- the three measurements ------------------------------------------------------------------------

def bare_claims_per_second(engine, count: int) -> float:
    """N bare claims, one at a time, each in its own transaction, in one loop of this process."""
    fill_queue(engine, count)
    worker = f"bare:{os.getpid()}"
    with engine.connect() as conn:
        started = time.perf_counter()
        for _ in range(count):
            now = utcnow()
            conn.execute(BARE_CLAIM, {"worker": worker, "now": now,
                                      "lease_until": now + dt.timedelta(seconds=LEASE_SECONDS)}).scalar_one()
            conn.commit()
        elapsed = time.perf_counter() - started
    return count / elapsed


def local_jobs_per_second(engine, workers: Workers, count: int) -> tuple[float, float, float]:
    """Returns (jobs/s, elapsed seconds, one worker's start-up-and-exit time on an empty queue)."""
    empty_queue(engine)
    started = time.perf_counter()
    probe = workers.start("--exit-when-idle")
    try:
        probe.wait(timeout=120)
    finally:
        workers.stop([probe])
    startup = time.perf_counter() - started
    if probe.returncode != 0:
        raise RuntimeError(f"a worker on an empty queue exited with {probe.returncode}\n{workers.tails([probe])}")

    fill_queue(engine, count)
    started = time.perf_counter()
    running = [workers.start("--exit-when-idle") for _ in range(WORKERS)]
    try:
        finished = wait_for_succeeded(engine, count, timeout=max(120.0, count / 20), workers=running)
        for process in running:
            process.wait(timeout=60)
    except Exception as exc:
        raise RuntimeError(f"{exc}\n{workers.tails(running)}") from None
    finally:
        workers.stop(running)
    if any(p.returncode != 0 for p in running):
        raise RuntimeError(f"local workers exited with {[p.returncode for p in running]}\n{workers.tails(running)}")
    check_each_ran_once(engine, count)
    elapsed = finished - started
    return count / elapsed, elapsed, startup


def celery_jobs_per_second(engine, workers: Workers, env: dict[str, str], count: int) -> tuple[float, float, float]:
    """Returns (jobs/s, elapsed seconds from the first enqueue, seconds spent enqueueing and publishing)."""
    from app.config import Settings
    from app.jobs.catalog import load_job_kinds
    from app.jobs.queue import enqueue
    from app.runtime import build_runtime

    queue = f"bench-jobs-{uuid.uuid4().hex[:8]}"
    celery_env = {"JOB_EXECUTOR": "celery", "CELERY_BROKER_URL": REDIS_URL, "CELERY_QUEUE": queue}
    load_job_kinds()
    runtime = build_runtime(Settings.from_env({**env, **celery_env}))
    running: list[subprocess.Popen] = []
    try:
        empty_queue(engine)
        running = [workers.start("--concurrency", "1", **celery_env) for _ in range(WORKERS)]
        with runtime.sessions.begin() as session:  # warm-up: the workers are ready once this job ran
            enqueue(session, "noop")
        try:
            wait_for_succeeded(engine, 1, timeout=120, workers=running)
        except Exception as exc:
            raise RuntimeError(f"celery workers did not run the warm-up job: {exc}\n{workers.tails(running)}") from None
        empty_queue(engine)

        batch = max(1, -(-count // 4))  # a few transactions; each publishes its ids after commit
        started = time.perf_counter()
        for start in range(0, count, batch):
            with runtime.sessions.begin() as session:
                for _ in range(min(batch, count - start)):
                    enqueue(session, "noop")
        enqueued = time.perf_counter() - started
        try:
            finished = wait_for_succeeded(engine, count, timeout=max(180.0, count / 10), workers=running)
        except Exception as exc:
            raise RuntimeError(f"{exc}\n{workers.tails(running)}") from None
    finally:
        workers.stop(running)
        runtime.close()
        _forget_redis_queue(queue)
    check_each_ran_once(engine, count)
    elapsed = finished - started
    return count / elapsed, elapsed, enqueued


def _forget_redis_queue(queue: str) -> None:
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = [k for pattern in (queue, f"{queue}\x06*", f"_kombu.binding.{queue}") for k in client.keys(pattern)]
        if keys:
            client.delete(*keys)
        client.close()
    except Exception as exc:  # noqa: BLE001 - leftovers in a scratch Redis db are harmless
        print(f"could not remove the Redis queue {queue}: {exc}", file=sys.stderr)


# --- main ------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 jobs: a smoke run")
    parser.add_argument("--jobs", type=int, default=20_000, help="number of no-op jobs (default 20,000)")
    parser.add_argument("--skip-celery", action="store_true", help="measure the local executor only")
    options = parser.parse_args()
    count = 1_000 if options.quick else options.jobs
    if count < 1:
        parser.error("--jobs must be at least 1")

    if not answers("127.0.0.1", 5432):
        raise SystemExit("PostgreSQL does not answer on 127.0.0.1:5432; this benchmark needs it")
    run_started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    database_cleanup = ExitStack()
    engine = None
    celery_failed = False
    try:
        url = database_cleanup.enter_context(throwaway_postgres("bench_jobs"))
        engine = make_engine(url)
        upgrade(engine)
        env = {**os.environ, "DATABASE_URL": url, "INSTANCE_DIR": str(scratch / "instance"),
               "FERNET_KEYS": Fernet.generate_key().decode(), "SECRET_KEY": "x", "APP_ENV": "test",
               "JOB_POLL_INTERVAL_SECONDS": "0.01", "LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        for variable in ("JOB_EXECUTOR", "CELERY_BROKER_URL", "CELERY_QUEUE", "EXTRA_JOB_MODULES"):
            env.pop(variable, None)
        workers = Workers(env, scratch)

        baseline = bare_claims_per_second(engine, count)
        say(f"bare UPDATE ... RETURNING claims, one loop: {baseline:.1f} claims/s over {count} jobs")

        ours, elapsed, startup = local_jobs_per_second(engine, workers, count)
        say(f"local executor, {WORKERS} worker processes: {ours:.1f} jobs/s ({count} jobs in {elapsed:.2f}s, "
            f"including worker start-up; one worker starting and exiting on an empty queue takes {startup:.2f}s)")

        if options.skip_celery:
            say("celery executor: skipped (--skip-celery)")
        elif not answers(REDIS_HOST, REDIS_PORT):
            say(f"celery executor: skipped (Redis does not answer on {REDIS_HOST}:{REDIS_PORT})")
        else:
            try:
                celery, c_elapsed, enqueued = celery_jobs_per_second(engine, workers, env, count)
                say(f"celery executor on Redis, {WORKERS} workers x concurrency 1: {celery:.1f} jobs/s "
                    f"({count} jobs in {c_elapsed:.2f}s, of which enqueue+publish {enqueued:.2f}s), "
                    f"ratio to bare claims {celery / baseline:.3f}")
            except Exception as exc:  # noqa: BLE001 - still report the local figures
                celery_failed = True
                say(f"celery executor: FAILED: {exc}")
        print(f"benchmark ran {time.perf_counter() - run_started:.1f}s", file=sys.stderr)
        say(f"ratio={ours / baseline:.3f} baseline={baseline:.1f} ours={ours:.1f}")
    finally:
        if engine is not None:
            engine.dispose()
        database_cleanup.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if celery_failed else 0


if __name__ == "__main__":
    sys.exit(main())
