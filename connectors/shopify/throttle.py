"""Client-side pacing against Shopify's GraphQL cost bucket, from the throttleStatus every answer carries."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol


_MAX_RESERVE_TRIES = 10
_POINT_TOLERANCE = 1e-6  # a sleep of exactly the computed time must be enough


@dataclass(frozen=True)
class BucketReading:
    """The bucket as one answer's `throttleStatus` described it, `at` seconds on the client's clock."""

    available: float
    maximum: float
    restore_rate: float
    at: float


class BucketLedger(Protocol):
    """The shop's bucket kept where every worker calling that shop sees it (the app keeps it in its database).

    Shopify's limit is per shop and app, not per process: two workers that each trust only their own last
    answer spend the same points twice and get throttled.
    """

    def reserve(self, cost: float, now: float) -> float:
        """Take `cost` points if the bucket has them at `now` and return 0; else the seconds until it will."""

    def record(self, reading: BucketReading) -> None:
        """Replace what is known with what Shopify just said."""


class CostBucket:
    """What we last heard about the shop's bucket, refilled by the clock, and what each operation costs.

    With a ledger, the bucket is the shared one: points are reserved there before each call, so workers
    pace one another; the operations' costs are still learned per client.
    """

    def __init__(self, clock: Callable[[], float], ledger: BucketLedger | None = None):
        self._clock = clock
        self._ledger = ledger
        self._reading: BucketReading | None = None
        self._costs: dict[str, float] = {}

    def observe(self, operation: str, cost: dict | None) -> None:
        """Record the `extensions.cost` of an answer to `operation`."""
        if not isinstance(cost, dict):
            return
        if cost.get("requestedQueryCost") is not None:
            self._costs[operation] = float(cost["requestedQueryCost"])
        status = cost.get("throttleStatus") or {}
        if status.get("currentlyAvailable") is not None:
            available = float(status["currentlyAvailable"])
            self._reading = BucketReading(available, float(status.get("maximumAvailable") or available),
                                          float(status.get("restoreRate") or 0), self._clock())
            if self._ledger is not None:
                self._ledger.record(self._reading)

    def available_now(self) -> float | None:
        reading = self._reading
        if reading is None:
            return None
        restored = (self._clock() - reading.at) * reading.restore_rate
        return min(reading.maximum or float("inf"), reading.available + restored)

    def wait_before(self, operation: str) -> float:
        """Seconds to wait so that the last known cost of `operation` fits; 0 when unknown or affordable.

        With a ledger, a 0 also means the points are now reserved for this call.
        """
        cost = self._costs.get(operation)
        if cost is None:
            return 0.0
        if self._ledger is not None:
            return self._ledger.reserve(cost, self._clock())
        available, reading = self.available_now(), self._reading
        if available is None or not reading.restore_rate:
            return 0.0
        # A query dearer than the whole bucket can only ever run on a full one.
        needed = min(cost, reading.maximum or cost)
        return max(0.0, (needed - available) / reading.restore_rate)

    def pace(self, operation: str, sleep: Callable[[float], None]) -> None:
        """Sleep until `operation` fits the bucket (and, with a ledger, its points are reserved)."""
        pause = self.wait_before(operation)
        if pause <= 0:
            return
        sleep(pause)
        if self._ledger is not None:
            for _ in range(_MAX_RESERVE_TRIES):  # another worker may have taken the refilled points meanwhile
                pause = self.wait_before(operation)
                if pause <= 0:
                    return
                sleep(pause)

    def wait_after_throttle(self, operation: str, default: float) -> float:
        """Seconds until a throttled `operation` fits, from the throttleStatus that came with the refusal."""
        reading, cost = self._reading, self._costs.get(operation)
        if reading is None or cost is None or not reading.restore_rate:
            return default
        needed = min(cost, reading.maximum or cost)
        wait = (needed - (self.available_now() or 0.0)) / reading.restore_rate
        return wait if wait > 0 else default


def reserve_from(reading: BucketReading | None, cost: float, now: float) -> tuple[float, float | None]:
    """The pure rule a ledger applies: (seconds to wait, points left after reserving; None when waiting).

    An unknown bucket lets the call go (Shopify's answer will tell). A query dearer than the whole bucket can
    only ever run on a full one, and leaves it below zero so the next caller waits for the refill.
    """
    if reading is None or reading.restore_rate <= 0:
        return 0.0, None
    available = min(reading.maximum, reading.available + max(0.0, now - reading.at) * reading.restore_rate)
    needed = min(cost, reading.maximum)
    if available >= needed - _POINT_TOLERANCE:
        return 0.0, available - cost
    return (needed - available) / reading.restore_rate, None
