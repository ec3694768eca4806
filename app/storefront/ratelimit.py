"""Fixed-window request counters shared by every web process: Redis when REDIS_URL is set, else the database."""
from __future__ import annotations

import functools
import random
import threading
import time

from sqlalchemy import Connection, delete, text

from app.models import RateLimitCounter

WINDOW_SECONDS = 60
counters = RateLimitCounter.__table__


def current_window(now: float | None = None) -> int:
    return int((now if now is not None else time.time()) // WINDOW_SECONDS)


def _upsert_sql(key_count: int):
    values = ", ".join(f"(:key{i}, :window_start, 1)" for i in range(key_count))
    # One plain statement, the same on SQLite (3.35+) and PostgreSQL: insert the window's counter or add one to it.
    return text(f"INSERT INTO rate_limit_counters (key, window_start, count) VALUES {values} "
                "ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limit_counters.count + 1 "
                "RETURNING key, count")


_UPSERTS = {n: _upsert_sql(n) for n in (1, 2, 3)}


def count_hits(conn: Connection | None, keys: list[str], redis_client=None, now: float | None = None) -> dict[str, int]:
    """Count one request against each key in the current window; returns each key's count so far, this one included.

    On the database the increments run on `conn`, in the caller's transaction: the caller commits them even
    when it then refuses the request, so refused requests count too. Keys are sorted so that two requests
    touching the same counters lock them in the same order and cannot deadlock.
    """
    window = current_window(now)
    keys = sorted(set(keys))
    if redis_client is not None:
        pipe = redis_client.pipeline(transaction=False)
        for key in keys:
            name = f"sc:rl:{key}:{window}"
            pipe.incr(name)
            pipe.expire(name, WINDOW_SECONDS * 2)
        results = pipe.execute()
        return {key: int(results[i * 2]) for i, key in enumerate(keys)}
    params = {f"key{i}": key for i, key in enumerate(keys)}
    counted = {key: count for key, count in conn.execute(_UPSERTS[len(keys)], {**params, "window_start": window}).all()}
    if random.random() < 0.001:
        # Old windows are never read again; an occasional sweep keeps the table at a few minutes of keys.
        conn.execute(delete(counters).where(counters.c.window_start < window - 1))
    return counted


# A process adds its hits to the shared counters at least this often, and sooner for a key once its unsynced
# hits reach 1/SYNC_SHARE of that key's limit: with N processes a key overshoots its limit by at most
# N * limit / SYNC_SHARE, and a limit under SYNC_SHARE is exact (every hit is synced).
SYNC_SECONDS = 1.0
SYNC_SHARE = 20
_CHUNK = 200


@functools.lru_cache(maxsize=None)
def _add_sql(key_count: int):
    values = ", ".join(f"(:key{i}, :window_start, :hits{i})" for i in range(key_count))
    return text(f"INSERT INTO rate_limit_counters (key, window_start, count) VALUES {values} "
                "ON CONFLICT (key, window_start) DO UPDATE SET count = rate_limit_counters.count + excluded.count "
                "RETURNING key, count")


def add_hits(conn: Connection | None, hits: dict[str, int], window: int, redis_client=None) -> dict[str, int]:
    """Add each key's hits to its shared counter of `window`; returns each key's total so far, every process's hits included."""
    keys = sorted(hits)  # the same lock order in every process: no deadlock between two batches
    totals: dict[str, int] = {}
    if redis_client is not None:
        pipe = redis_client.pipeline(transaction=False)
        for key in keys:
            name = f"sc:rl:{key}:{window}"
            pipe.incrby(name, hits[key])
            pipe.expire(name, WINDOW_SECONDS * 2)
        results = pipe.execute()
        return {key: int(results[i * 2]) for i, key in enumerate(keys)}
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start:start + _CHUNK]
        params: dict = {"window_start": window}
        for i, key in enumerate(chunk):
            params[f"key{i}"], params[f"hits{i}"] = key, hits[key]
        totals.update(conn.execute(_add_sql(len(chunk)), params).all())
    if random.random() < 0.01:
        conn.execute(delete(counters).where(counters.c.window_start < window - 1))
    return totals


class BatchedCounts:
    """This process's hits in the current window, added to the shared counters in batches rather than one write a request.

    `count()` adds a hit and hands back a batch to sync when one is due (SYNC_SECONDS passed, or a key came
    near its limit); the caller writes it with `add_hits()` and reports the totals with `synced()`.
    `estimate()` is what this process knows of a key: every process's total as of its last sync of the key,
    plus its own hits since; the caller refuses a request when that is over the limit.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._window = -1
        self._shared: dict[str, int] = {}
        self._pending: dict[str, int] = {}
        self._synced_at = time.monotonic()

    def count(self, limits: dict[str, int], now: float | None = None) -> tuple[int, dict[str, int] | None]:
        """Count one hit against each key; returns the window and the hits to sync now (None when not due)."""
        window = current_window(now)
        with self._lock:
            if window != self._window:
                # Old windows are never read again; their unsynced hits no longer matter.
                self._window, self._shared, self._pending = window, {}, {}
            due = time.monotonic() - self._synced_at >= SYNC_SECONDS
            for key, limit in limits.items():
                pending = self._pending[key] = self._pending.get(key, 0) + 1
                if pending * SYNC_SHARE >= limit and self._shared.get(key, 0) <= limit:
                    due = True
            if not due:
                return window, None
            batch, self._pending, self._synced_at = self._pending, {}, time.monotonic()
            return window, batch

    def synced(self, window: int, totals: dict[str, int]) -> None:
        with self._lock:
            if window == self._window:
                for key, total in totals.items():
                    self._shared[key] = max(self._shared.get(key, 0), total)

    def unsynced(self, window: int, batch: dict[str, int]) -> None:
        """The batch was not written (the transaction failed): count its hits again next time."""
        with self._lock:
            if window == self._window:
                for key, hits in batch.items():
                    self._pending[key] = self._pending.get(key, 0) + hits

    def estimate(self, key: str) -> int:
        with self._lock:
            return self._shared.get(key, 0) + self._pending.get(key, 0)
