"""SQLite's WAL copied into the database by a background thread of each writing process, beside the writers.

Left to SQLite, the writer whose commit takes the WAL past `wal_autocheckpoint` pages copies it into the
database inside that commit, while it holds the writers' turn (app/db.py): every other writer of every
process waits for the copy. Under a steady stream of webhooks that was a stall of about 30 ms several times a
second, and it made the p99 latency of `bench/webhooks.py` (28 ms against the bare endpoint's 2 ms).

Here a daemon thread, started by a process's first commit, runs `PRAGMA wal_checkpoint(PASSIVE)` every
CHECKPOINT_INTERVAL_SECONDS while commits happen: PASSIVE copies what it can without waiting for anyone, and
the sqlite3 module lets go of the GIL while it runs, so requests are served meanwhile. Writers keep appending
during the copy, so the WAL would never be wholly copied, and SQLite restarts it from the top only then: when
the pass leaves at least RESTART_FRAMES frames behind, the thread takes the writers' turn for the short
remainder, and the next writer starts the WAL over. SQLite's own checkpoint in the commit stays as a backstop
(app/db.py SQLITE_WAL_AUTOCHECKPOINT_PAGES) for a process whose thread falls behind. The thread ends after
IDLE_SECONDS without commits and starts again with the next one.
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
IDLE_SECONDS = 5.0


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
        self._lock = threading.Lock()
        self._commits = 0
        self._thread: threading.Thread | None = None
        self._pid = 0
        self.passes = 0  # checkpoint passes run, and those that finished under the writers' turn (the tests read these)
        self.restarts = 0

    def committed(self) -> None:
        """A writer of this process committed: make sure the thread runs (a dict lookup and an add when it does)."""
        self._commits += 1
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is None or self._pid != os.getpid():  # none yet, or a forked child holding its parent's
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name=f"wal-checkpoints:{self.database.name}",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(f"file:{self.database}?mode=rw", uri=True, isolation_level=None,
                                         check_same_thread=False)
        except sqlite3.Error:
            self._stopped()
            return
        try:
            with open(self.lock_path, "a+b") as turn:
                self._loop(connection, turn.fileno())
        except (OSError, sqlite3.Error) as exc:  # the database went away (a test's temporary one), or a disk error
            log.debug("WAL checkpoints stopped", extra={"error": f"{type(exc).__name__}: {exc}"})
        finally:
            connection.close()
            self._stopped()

    def _loop(self, connection: sqlite3.Connection, turn: int) -> None:
        seen, idle_since = -1, time.monotonic()
        while True:
            time.sleep(CHECKPOINT_INTERVAL_SECONDS)
            if self._commits == seen:
                if time.monotonic() - idle_since > IDLE_SECONDS:
                    with self._lock:
                        if self._commits == seen:  # else a commit came just now: keep going
                            self._thread = None
                            return
                continue
            seen, idle_since = self._commits, time.monotonic()
            try:
                busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except sqlite3.OperationalError:  # another process's thread is checkpointing this very moment
                continue
            self.passes += 1
            if busy or frames < RESTART_FRAMES or copied >= frames:
                continue
            fcntl.flock(turn, fcntl.LOCK_EX)  # no writer now: the rest is copied at once, and the WAL can restart
            try:
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.restarts += 1
            finally:
                fcntl.flock(turn, fcntl.LOCK_UN)

    def _stopped(self) -> None:
        with self._lock:
            if self._thread is threading.current_thread():
                self._thread = None
