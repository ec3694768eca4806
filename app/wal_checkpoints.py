"""SQLite's WAL copied into the database by a background thread of each writing process, beside the writers.

Left to SQLite, the writer whose commit takes the WAL past `wal_autocheckpoint` pages copies it into the
database inside that commit, while it holds the writers' turn (app/db.py): every other writer of every
process waits for the copy. Under a steady stream of webhooks that was a stall of about 30 ms several times a
second, and it made the p99 latency of `bench/webhooks.py` (28 ms against the bare endpoint's 2 ms).

Here a daemon thread, started by a process's first commit that wrote something, runs
`PRAGMA wal_checkpoint(PASSIVE)` every CHECKPOINT_INTERVAL_SECONDS while such commits happen: PASSIVE copies
what it can without waiting for anyone, and the sqlite3 module lets go of the GIL while it runs, so requests
are served meanwhile. Writers keep appending during the copy, and SQLite starts the WAL over only once all of
it was copied: when the WAL holds at least RESTART_FRAMES frames and the pass left some behind, the thread
takes the writers' turn for the short remainder, and the next writer starts the WAL over. (A reader holding
an old snapshot can keep even that pass from finishing; then the thread leaves the writers alone for
LOCKED_PASS_BACKOFF_SECONDS.) SQLite's own checkpoint in the commit stays as a backstop
(app/db.py SQLITE_WAL_AUTOCHECKPOINT_PAGES) for a process whose thread falls behind.

The thread ends after IDLE_SECONDS without commits, when its engine is disposed (`stop`: its connection, the
last one, then lets SQLite fold the WAL into the database as before), or when the database file it opened was
replaced; the next commit starts it again.
"""
from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_SECONDS = 0.1
RESTART_FRAMES = 1_000
LOCKED_PASS_BACKOFF_SECONDS = 1.0
IDLE_SECONDS = 5.0
STOP_WAIT_SECONDS = 5.0

_BY_DATABASE: dict[Path, "BackgroundCheckpoints"] = {}
_BY_DATABASE_LOCK = threading.Lock()


def checkpoints_for(database: Path, lock_path: Path) -> BackgroundCheckpoints:
    """The one checkpointer of this database in this process, however many engines open it."""
    key = database.resolve()
    with _BY_DATABASE_LOCK:
        found = _BY_DATABASE.get(key)
        if found is None:
            found = _BY_DATABASE[key] = BackgroundCheckpoints(key, lock_path)
        return found


class BackgroundCheckpoints:
    """One database's background checkpointer in this process."""

    def __init__(self, database: Path, lock_path: Path):
        self.database = database
        self.lock_path = lock_path
        self._reset()
        # What the thread did (the tests read these): passes run, those run under the writers' turn, and how many
        # of this process's commits the latest pass came after.
        self.passes = 0
        self.locked_passes = 0
        self.covered_commits = 0

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._commits = 0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def committed(self) -> None:
        """A writer of this process committed a change: make sure the thread runs (an add and a read when it does)."""
        self._commits += 1
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._run, args=(self._stop,), daemon=True,
                                                name=f"wal-checkpoints:{self.database.name}")
                self._thread.start()

    def stop(self) -> None:
        """End the thread and close its connection (an engine of this database was disposed)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_WAIT_SECONDS)

    def _run(self, stop: threading.Event) -> None:
        try:
            opened = os.stat(self.database).st_ino
            connection = sqlite3.connect(self.database.as_uri() + "?mode=rw", uri=True, isolation_level=None,
                                         check_same_thread=False)
        except (OSError, sqlite3.Error):
            self._stopped()
            return
        try:
            with open(self.lock_path, "a+b") as turn:
                self._loop(connection, turn.fileno(), opened, stop)
        except (OSError, sqlite3.Error) as exc:  # the database went away (a test's temporary one), or a disk error
            log.debug("WAL checkpoints stopped", extra={"error": f"{type(exc).__name__}: {exc}"})
        finally:
            connection.close()
            self._stopped()

    def _loop(self, connection: sqlite3.Connection, turn: int, opened: int, stop: threading.Event) -> None:
        seen, idle_since, locked_again_at = -1, time.monotonic(), 0.0
        while not stop.wait(CHECKPOINT_INTERVAL_SECONDS):
            now = time.monotonic()
            if self._commits == seen:
                if now - idle_since > IDLE_SECONDS:
                    with self._lock:
                        if self._commits == seen:  # else a commit came just now: keep going
                            return
                continue
            seen, idle_since = self._commits, now
            if os.stat(self.database).st_ino != opened:
                return  # the file was replaced: this connection would checkpoint the old one
            # (busy, frames in the WAL, frames copied); busy when another process's thread is checkpointing now
            busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.passes += 1
            if busy or frames < RESTART_FRAMES or copied >= frames or now < locked_again_at:
                self.covered_commits = seen
                continue
            fcntl.flock(turn, fcntl.LOCK_EX)  # no writer now: the rest is copied at once, and the WAL can restart
            try:
                _, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.locked_passes += 1
            finally:
                fcntl.flock(turn, fcntl.LOCK_UN)
            self.covered_commits = seen
            if copied < frames:  # a reader holds an old snapshot: do not stall the writers again at once
                locked_again_at = time.monotonic() + LOCKED_PASS_BACKOFF_SECONDS

    def _stopped(self) -> None:
        with self._lock:
            if self._thread is threading.current_thread():
                self._thread = None


def _forget_threads_in_child() -> None:
    """A forked child has none of its parent's threads, and its locks may have been copied while held."""
    global _BY_DATABASE_LOCK
    _BY_DATABASE_LOCK = threading.Lock()
    for checkpoints in _BY_DATABASE.values():
        checkpoints._reset()


os.register_at_fork(after_in_child=_forget_threads_in_child)
