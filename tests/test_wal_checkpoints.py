"""SQLite's WAL is copied into the database by a background thread, beside the writers, and starts over."""
from __future__ import annotations

import os
import shutil
import sqlite3
import time

from sqlalchemy import text

from app import wal_checkpoints
from app.db import make_engine


def _frames_in_wal(database) -> int:
    """How many frames the WAL holds now (a PASSIVE checkpoint reports it; nothing else writes here)."""
    with sqlite3.connect(database, isolation_level=None) as connection:
        return connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]


def _engine_with_notes(database):
    engine = make_engine(f"sqlite:///{database}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    return engine, wal_checkpoints.checkpoints_for(database, database.with_name(database.name + "-writer.lock"))


def _write(engine, commits: int) -> None:
    for _ in range(commits):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO notes (body) VALUES (:body)"), {"body": os.urandom(3000).hex()})


def _wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_the_background_thread_copies_the_wal_so_it_starts_over_without_a_writer_copying_it(tmp_path):
    database = tmp_path / "companion.db"
    engine, checkpoints = _engine_with_notes(database)

    _write(engine, 1500)  # about 3,000 pages: under the committing writer's backstop of 10,000
    assert _wait_for(lambda: checkpoints.covered_commits == checkpoints._commits)  # a pass after the last commit
    _write(engine, 1)

    assert _frames_in_wal(database) < 20  # the next writer started the WAL over: it had all been copied
    engine.dispose()


def test_the_thread_ends_when_no_commit_comes_and_starts_again_with_the_next(tmp_path, monkeypatch):
    monkeypatch.setattr(wal_checkpoints, "IDLE_SECONDS", 0.3)
    engine, checkpoints = _engine_with_notes(tmp_path / "companion.db")
    _write(engine, 1)
    assert checkpoints._thread is not None

    assert _wait_for(lambda: checkpoints._thread is None, 5)
    _write(engine, 1)
    assert checkpoints._thread is not None and checkpoints._thread.is_alive()
    engine.dispose()


def test_a_transaction_that_changed_nothing_starts_no_thread(tmp_path):
    engine, checkpoints = _engine_with_notes(tmp_path / "companion.db")  # DDL alone: no row changed
    with engine.begin() as conn:
        conn.execute(text("SELECT count(*) FROM notes"))

    assert checkpoints._thread is None
    engine.dispose()


def test_disposing_the_engine_ends_the_thread_and_leaves_one_complete_database_file(tmp_path):
    database = tmp_path / "companion.db"
    engine, checkpoints = _engine_with_notes(database)
    _write(engine, 300)
    engine.dispose()

    assert checkpoints._thread is None
    assert not database.with_name("companion.db-wal").exists()  # folded into the database by the last close
    copy = tmp_path / "copy.db"
    shutil.copy(database, copy)
    with sqlite3.connect(copy) as connection:
        assert connection.execute("SELECT count(*) FROM notes").fetchone()[0] == 300


def test_a_database_file_replaced_at_the_same_path_is_checkpointed_in_its_own_right(tmp_path):
    database = tmp_path / "companion.db"
    engine, checkpoints = _engine_with_notes(database)
    _write(engine, 10)
    engine.dispose()
    for suffix in ("", "-wal", "-shm"):
        database.with_name("companion.db" + suffix).unlink(missing_ok=True)
    engine, checkpoints = _engine_with_notes(database)

    _write(engine, 1500)
    assert _wait_for(lambda: checkpoints.covered_commits == checkpoints._commits)
    _write(engine, 1)

    assert _frames_in_wal(database) < 20
    engine.dispose()
