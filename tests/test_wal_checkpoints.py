"""SQLite's WAL is copied into the database by a background thread, beside the writers, and starts over."""
from __future__ import annotations

import os
import time

from sqlalchemy import text

from app import wal_checkpoints
from app.db import make_engine


def _frames_in_wal(database) -> int:
    """How many frames the WAL holds now (a PASSIVE checkpoint reports it; the database is idle here)."""
    import sqlite3

    with sqlite3.connect(database, isolation_level=None) as connection:
        return connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]


def _write(engine, commits: int) -> None:
    for n in range(commits):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": os.urandom(3000).hex()})


def test_the_background_thread_copies_the_wal_so_it_starts_over_without_a_writer_copying_it(tmp_path):
    database = tmp_path / "companion.db"
    engine = make_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    checkpoints = wal_checkpoints.checkpoints_for(database, database.with_name("companion.db-writer.lock"))

    _write(engine, 1500)  # about 3,000 pages: under the committing writer's backstop of 10,000
    deadline = time.monotonic() + 10
    while checkpoints.passes == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(2 * wal_checkpoints.CHECKPOINT_INTERVAL_SECONDS)  # the pass after the last commit
    _write(engine, 1)

    assert checkpoints.passes >= 1
    assert _frames_in_wal(database) < 20  # the next writer started the WAL over: it had all been copied
    engine.dispose()


def test_the_thread_ends_when_no_commit_comes_and_starts_again_with_the_next(tmp_path, monkeypatch):
    monkeypatch.setattr(wal_checkpoints, "IDLE_SECONDS", 0.3)
    database = tmp_path / "companion.db"
    engine = make_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    checkpoints = wal_checkpoints.checkpoints_for(database, database.with_name("companion.db-writer.lock"))
    assert checkpoints._thread is not None

    deadline = time.monotonic() + 5
    while checkpoints._thread is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpoints._thread is None
    _write(engine, 1)
    assert checkpoints._thread is not None and checkpoints._thread.is_alive()
    engine.dispose()


def test_a_read_only_transaction_starts_no_thread(tmp_path):
    database = tmp_path / "companion.db"
    engine = make_engine(f"sqlite:///{database}")
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    checkpoints = wal_checkpoints.checkpoints_for(database, database.with_name("companion.db-writer.lock"))
    assert checkpoints._thread is None
    engine.dispose()
