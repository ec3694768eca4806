"""What the benchmarks share: output, port and service checks, throwaway PostgreSQL databases, and gunicorn serving our
app beside a bare one."""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def say(line: str) -> None:
    print(line, flush=True)


def answers(host: str, port: int) -> bool:
    """Whether something accepts TCP connections there (PostgreSQL, Redis...)."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def throwaway_postgres(prefix: str) -> Iterator[str]:
    """Yields the URL of a new database `<prefix>_<random>` on ADMIN_URL's server and drops it afterwards, also on
    errors: every bench measures on a fresh database and must leave nothing behind."""
    from sqlalchemy import create_engine, text  # here, so importing this module stays cheap

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        finally:
            admin.dispose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class GunicornServer:
    """gunicorn serving bench/bare_wsgi.py: `create_app()` and, at BARE_PATH, an empty Flask view answering
    `bare_status` - same server, same workers, same run, so the bare figure is the ceiling of server and client."""

    def __init__(self, env: dict[str, str], workers: int, log_path: Path, *, threads: int = 1, bare_status: int = 200):
        self.port = free_port()
        self.log_path = log_path
        with log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "bench.bare_wsgi:application", "--bind", f"{HOST}:{self.port}",
                 "--workers", str(workers), "--graceful-timeout", "5",
                 *(["--worker-class", "gthread", "--threads", str(threads)] if threads > 1 else []),
                 "--no-control-socket"],  # else it takes ~/.gunicorn/gunicorn.ctl from any other gunicorn
                cwd=ROOT, env={**env, "BENCH_BARE_STATUS": str(bare_status)}, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}:\n{self.tail()}")
            try:
                connection = http.client.HTTPConnection(HOST, self.port, timeout=2)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    connection.close()
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not answer /healthz within {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
