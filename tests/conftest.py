"""Shared test fixtures: a freshly migrated database per test (SQLite always, PostgreSQL when it answers)."""
from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import create_engine, text

from app.config import PROJECT_ROOT, Settings
from app.db import make_engine
from app.jobs.catalog import load_job_kinds
from app.migrate import upgrade

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")
FERNET_KEY = Fernet.generate_key().decode()

load_job_kinds(extra=["tests.jobkinds"])


def service_answers(url: str) -> bool:
    parsed = urlparse(url.replace("postgresql+psycopg", "postgresql"))
    default_ports = {"redis": 6379, "amqp": 5672, "postgresql": 5432}
    try:
        with socket.create_connection((parsed.hostname, parsed.port or default_ports.get(parsed.scheme)), timeout=1):
            return True
    except OSError:
        return False


def require(name: str, url: str) -> None:
    """Skip when a service is absent on a developer's machine; fail when it is absent under CI."""
    if service_answers(url):
        return
    message = f"{name} does not answer at {url}"
    if IN_CI:
        pytest.fail(f"{message}; under CI=true it must (see .ci/run)")
    pytest.skip(f"{message}; start it to run these tests")


def _admin_engine():
    return create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")


def _database_url(name: str) -> str:
    return POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "companion.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_template():
    require("PostgreSQL", POSTGRES_ADMIN_URL)
    name = f"companion_tpl_{uuid.uuid4().hex[:10]}"
    admin = _admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(_database_url(name))
    upgrade(engine)
    engine.dispose()
    yield name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def sqlite_database_url(sqlite_template, tmp_path) -> str:
    """A migrated, empty SQLite database of its own for this test (for modules that need no second database)."""
    path = tmp_path / "companion.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> str:
    """A migrated, empty database of its own for this test."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_database_url")
        return
    template = request.getfixturevalue("postgres_template")
    dropper = request.getfixturevalue("postgres_dropper")
    name = f"companion_t_{uuid.uuid4().hex[:12]}"
    with dropper.admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield _database_url(name)
    dropper.drop_later(name)


class _DatabaseDropper:
    """Drops each test's PostgreSQL database on a background thread while the next tests run (a DROP DATABASE
    takes 0.1-0.2 s here); the session waits for the last drops before it ends."""

    def __init__(self):
        self.admin = _admin_engine()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="drop-db")
        self._pending: list[concurrent.futures.Future] = []

    def drop_later(self, name: str) -> None:
        self._pending.append(self._pool.submit(self._drop, name))

    def _drop(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        for future in self._pending:
            future.result()  # a failed drop is reported, not hidden
        self.admin.dispose()


@pytest.fixture(scope="session")
def postgres_dropper():
    dropper = _DatabaseDropper()
    yield dropper
    dropper.close()


@pytest.fixture
def service_env(database_url, tmp_path) -> dict[str, str]:
    """The environment a service process of this test runs with."""
    return {
        "DATABASE_URL": database_url,
        "INSTANCE_DIR": str(tmp_path / "instance"),
        "FERNET_KEYS": FERNET_KEY,
        "SECRET_KEY": "test-secret-key",
        "APP_ENV": "test",
        "EXTRA_JOB_MODULES": "tests.jobkinds",
        "JOB_POLL_INTERVAL_SECONDS": "0.05",
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture
def make_settings(service_env) -> Callable[..., Settings]:
    def build(**overrides: str) -> Settings:
        return Settings.from_env({**service_env, **overrides}, testing=True)

    return build


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture
def runtime(settings):
    from app.runtime import build_runtime

    built = build_runtime(settings)
    yield built
    built.close()


@pytest.fixture
def app(settings):
    from app import create_app

    application = create_app(settings)
    yield application
    application.extensions["companion"].close()


@pytest.fixture
def client(app):
    return app.test_client()


class ServiceProcesses:
    """Service processes (`python -m app ...`) started by a test, each logging to its own file."""

    def __init__(self, base_env: dict[str, str], log_dir: Path):
        self.base_env = base_env
        self.log_dir = log_dir
        self.started: list[tuple[subprocess.Popen, Path]] = []

    def start(self, *args: str, **env: str) -> subprocess.Popen:
        log_path = self.log_dir / f"proc-{len(self.started)}-{'-'.join(args)[:40]}.log"
        full_env = {**os.environ, **self.base_env, **env, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen([sys.executable, "-m", "app", *args], cwd=PROJECT_ROOT, env=full_env,
                                   stdout=log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        process.log_path = log_path  # type: ignore[attr-defined]
        self.started.append((process, log_path))
        return process

    @staticmethod
    def log_of(process: subprocess.Popen) -> str:
        return process.log_path.read_text(errors="replace")  # type: ignore[attr-defined]

    def stop_all(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in self.started:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def processes(service_env, tmp_path):
    started = ServiceProcesses(service_env, tmp_path)
    yield started
    started.stop_all()


def wait_until(condition: Callable[[], object], timeout: float = 60.0, interval: float = 0.1, message: str = "") -> object:
    """Poll until `condition()` is truthy; the timeout only bounds a hang, it asserts no speed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {message or condition}")


# --- headless Chromium, one per test session (two Playwright instances cannot share a process) -------------

CHROMIUM = "/usr/bin/chromium"


def _require_browser():
    missing = None
    if not os.path.exists(CHROMIUM):
        missing = f"{CHROMIUM} is not installed (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "the playwright package is not installed (pip install -r requirements.txt)"
    if missing:
        if IN_CI:
            pytest.fail(f"{missing}; under CI=true the browser tests must run (see .ci/run)")
        pytest.skip(missing)


@pytest.fixture(scope="session")
def browser():
    _require_browser()
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
    yield launched
    launched.close()
    playwright.stop()
