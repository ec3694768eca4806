"""Engine and sessions: SQLite tuned for several processes, PostgreSQL as is."""
from __future__ import annotations

import contextlib
import fcntl
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from app.wal_checkpoints import BackgroundCheckpoints, checkpoints_for

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Pages the WAL may hold before the committing writer copies them into the database (SQLite's default: 1,000).
# Normally a background thread of each writing process copies the WAL first, beside the writers
# (app/wal_checkpoints.py); this is the backstop for a process whose thread falls behind. The WAL file is cut
# back after each checkpoint.
SQLITE_WAL_AUTOCHECKPOINT_PAGES = 10_000
SQLITE_WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


def make_engine(database_url: str, *, sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS, **kwargs) -> Engine:
    if database_url.startswith("sqlite"):
        return _make_sqlite_engine(database_url, sqlite_busy_timeout_ms, **kwargs)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(database_url, **kwargs)


def _make_sqlite_engine(database_url: str, busy_timeout_ms: int, **kwargs) -> Engine:
    path = database_url.split("///", 1)[-1]
    on_disk = bool(path) and path != ":memory:" and not path.startswith("file:")
    if on_disk:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    connect_args = {"timeout": busy_timeout_ms / 1000, "isolation_level": None, "check_same_thread": False}
    if on_disk:
        connect_args["factory"] = _writer_queue_connection(Path(path), busy_timeout_ms)
    # The driver must not open transactions on its own: we issue BEGIN IMMEDIATE ourselves so a
    # transaction that reads then writes never fails with SQLITE_BUSY half-way (it waits instead).
    engine = create_engine(database_url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT_PAGES}")
        cursor.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_SIZE_LIMIT_BYTES}")
        cursor.close()

    if on_disk:
        @event.listens_for(engine, "engine_disposed")
        def _on_dispose(_engine):
            # Its connection may be the database's last: closing it lets SQLite fold the WAL in as it did before.
            connect_args["factory"].checkpoints.stop()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        begin_sqlite_write(connection.connection.driver_connection)

    return engine


def begin_sqlite_write(driver: sqlite3.Connection) -> None:
    """Our writer's turn (when the database has a writer queue), then BEGIN IMMEDIATE."""
    queued = isinstance(driver, WriterQueueConnection)
    if queued:
        driver.wait_for_writer_turn()
    try:
        driver.execute("BEGIN IMMEDIATE")
    except BaseException:
        if queued:
            driver.end_writer_turn()
        raise
    if queued:
        driver._changes_at_begin = driver.total_changes  # did the transaction write? (WAL checkpoints)


class WriterQueueConnection(sqlite3.Connection):
    """An SQLite connection whose write transactions take turns on a file lock beside the database.

    SQLite lets one writer in at a time. The others' BEGIN IMMEDIATE get SQLITE_BUSY, and SQLite's busy
    handler then sleeps 1, 2, 5, 10 ... 100 ms between tries: two busy web workers spent most of their time
    asleep (webhooks/s halved going from one gunicorn worker to two). Waiting on our own lock instead hands the
    database to the next writer the moment the previous one commits: the waiter blocks in the kernel (flock),
    costing no CPU, and is woken by the release. (Polling the lock every 0.05-0.2 ms cost busy senders a tenth
    of their CPU.) The lock is held from BEGIN to COMMIT or ROLLBACK only; a process that dies loses it with
    its file descriptor.

    A thread that already holds a turn on another connection to the same database would wait on itself
    forever: that thread polls instead, and after the busy timeout goes ahead anyway, so SQLite's own timeout
    error stays the last word.
    """

    lock_path: Path  # set on the subclass made per database
    busy_timeout_ms: int
    checkpoints: BackgroundCheckpoints

    def wait_for_writer_turn(self) -> None:
        if getattr(self, "_lock_file", None) is None:
            self._lock_file = open(self.lock_path, "a+b")  # noqa: SIM115 - lives as long as the connection
        if getattr(self, "_holding", False):
            return
        held = _turns_held_by_this_thread()
        if self.lock_path in held:
            if not self._poll_for_turn():
                return
        else:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX)
        self._holding = True
        self._held_in = held  # released from this thread's record even if another thread ends the turn
        held[self.lock_path] = held.get(self.lock_path, 0) + 1

    def _poll_for_turn(self) -> bool:
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        pause = 0.00005
        while True:
            try:
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 0.001)

    def end_writer_turn(self) -> None:
        if getattr(self, "_holding", False):
            self._holding = False
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)
            held = self._held_in
            if held.get(self.lock_path, 0) > 1:
                held[self.lock_path] -= 1
            else:
                held.pop(self.lock_path, None)

    def commit(self) -> None:
        wrote = getattr(self, "_holding", False) and self.total_changes != self._changes_at_begin
        try:
            super().commit()
        finally:
            self.end_writer_turn()
        if wrote:
            self.checkpoints.committed()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self.end_writer_turn()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.end_writer_turn()
            if getattr(self, "_lock_file", None) is not None:
                self._lock_file.close()
                self._lock_file = None


_THREAD_TURNS = threading.local()


def _turns_held_by_this_thread() -> dict[Path, int]:
    """Writer turns this thread holds, per database lock file (how many connections hold one)."""
    held = getattr(_THREAD_TURNS, "held", None)
    if held is None:
        held = _THREAD_TURNS.held = {}
    return held


def _writer_queue_connection(database: Path, busy_timeout_ms: int) -> type[WriterQueueConnection]:
    lock_path = database.with_name(database.name + "-writer.lock")
    return type("WriterQueueConnection", (WriterQueueConnection,), {
        "lock_path": lock_path, "busy_timeout_ms": busy_timeout_ms,
        "checkpoints": checkpoints_for(database, lock_path)})


@contextlib.contextmanager
def driver_transaction(engine: Engine) -> Iterator[Any]:
    """A write transaction on a pooled driver connection, for a hot path whose whole transaction is one or two
    statements (`POST /s/events`, a webhook on SQLite): SQLAlchemy's connection, event and execution machinery cost that path more than
    the database did (cProfile). It starts as `engine.begin()` does: on SQLite the writer turn, then BEGIN IMMEDIATE;
    psycopg opens its transaction at the first statement. Commits on success, rolls back on any error.
    """
    pooled = engine.raw_connection()
    driver = pooled.driver_connection
    try:
        if isinstance(driver, sqlite3.Connection):
            begin_sqlite_write(driver)
        yield driver
        driver.commit()
    except BaseException:
        try:
            driver.rollback()  # also ends the SQLite writer turn
        except Exception:  # noqa: BLE001 - a broken connection: the pool must not hand it out again
            pooled.invalidate()
        raise
    finally:
        pooled.close()


@contextlib.contextmanager
def driver_autocommit(engine: Engine) -> Iterator[Any]:
    """A pooled driver connection in autocommit, for a hot path whose whole work is ONE statement (PostgreSQL
    commits a statement atomically): one round trip instead of BEGIN, the statement and COMMIT."""
    pooled = engine.raw_connection()
    driver = pooled.driver_connection
    driver.autocommit = True
    try:
        yield driver
    finally:
        try:
            driver.autocommit = False
        except Exception:  # noqa: BLE001 - a broken connection: the pool must not hand it out again
            pooled.invalidate()
        pooled.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)
