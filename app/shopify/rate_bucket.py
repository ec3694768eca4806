"""A shop's Shopify cost bucket in the database, so every worker calling that shop paces the others."""
from __future__ import annotations

from sqlalchemy import Engine, select, update

from app.models import ApiRateBucket
from connectors.shopify import BucketReading, reserve_from

buckets = ApiRateBucket.__table__
API = "shopify_graphql"


class DatabaseBucketLedger:
    """The `BucketLedger` of one shop, one row in `api_rate_buckets`.

    A reservation is a short write transaction (BEGIN IMMEDIATE on SQLite, a row lock on PostgreSQL), so two
    workers never both take the last points; Shopify's own figures replace ours after every answer.
    """

    def __init__(self, engine: Engine, shop_id: int):
        self._engine = engine
        self._shop_id = shop_id

    def reserve(self, cost: float, now: float) -> float:
        with self._engine.begin() as conn:
            row = conn.execute(
                select(buckets.c.available, buckets.c.maximum, buckets.c.restore_rate, buckets.c.as_of)
                .where(buckets.c.shop_id == self._shop_id, buckets.c.api == API)
                .with_for_update()
            ).first()
            reading = BucketReading(row.available, row.maximum, row.restore_rate, row.as_of) if row else None
            wait, left = reserve_from(reading, cost, now)
            if left is not None:
                conn.execute(update(buckets).where(buckets.c.shop_id == self._shop_id, buckets.c.api == API)
                             .values(available=left, as_of=max(now, reading.at)))
        return wait

    def record(self, reading: BucketReading) -> None:
        values = dict(available=reading.available, maximum=reading.maximum, restore_rate=reading.restore_rate,
                      as_of=reading.at)
        with self._engine.begin() as conn:
            changed = conn.execute(update(buckets).where(buckets.c.shop_id == self._shop_id, buckets.c.api == API)
                                   .values(**values)).rowcount
            if not changed:
                conn.execute(_insert_ignoring_race(conn.dialect.name).values(shop_id=self._shop_id, api=API, **values))


def _insert_ignoring_race(dialect: str):
    """A first reading from two workers at once: one row wins, the other reading is as good as lost."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(buckets).on_conflict_do_nothing(index_elements=["shop_id", "api"])
