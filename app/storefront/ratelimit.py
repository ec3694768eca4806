"""Fixed-window request counters shared by every web process: Redis when REDIS_URL is set, else the database."""
from __future__ import annotations

import random
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
