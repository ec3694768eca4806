"""Fixed-window request counters shared by every web process: Redis when REDIS_URL is set, else the database."""
from __future__ import annotations

import random
import time

from sqlalchemy import Engine, delete, text

from app.models import RateLimitCounter

WINDOW_SECONDS = 60
counters = RateLimitCounter.__table__


def current_window(now: float | None = None) -> int:
    return int((now if now is not None else time.time()) // WINDOW_SECONDS)


def count_hits(engine: Engine, keys: list[str], redis_client=None, now: float | None = None) -> dict[str, int]:
    """Count one request against each key in the current window; returns each key's count so far, this one included.

    On the database the increments are their own short transaction (one statement for all keys), committed
    before the request's work starts: a request refused later is still counted, and the hot counter row of
    a busy IP is locked only for that statement, not for the whole request.
    """
    window = current_window(now)
    if redis_client is not None:
        pipe = redis_client.pipeline(transaction=False)
        for key in keys:
            name = f"sc:rl:{key}:{window}"
            pipe.incr(name)
            pipe.expire(name, WINDOW_SECONDS * 2)
        results = pipe.execute()
        return {key: int(results[i * 2]) for i, key in enumerate(keys)}
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    # Sorted keys: two requests upserting the same rows lock them in the same order and cannot deadlock.
    statement = insert(counters).values([{"key": key, "window_start": window, "count": 1} for key in sorted(set(keys))])
    statement = statement.on_conflict_do_update(
        index_elements=["key", "window_start"], set_={"count": counters.c.count + 1}
    ).returning(counters.c.key, counters.c.count)
    with engine.begin() as conn:
        if postgres:
            # A counter lost in a crash costs nothing; not waiting for the WAL flush keeps this cheap.
            conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
        counted = {key: count for key, count in conn.execute(statement).all()}
        if random.random() < 0.01:
            # Old windows are never read again; an occasional sweep keeps the table at a few minutes of keys.
            conn.execute(delete(counters).where(counters.c.window_start < window - 1))
    return counted
