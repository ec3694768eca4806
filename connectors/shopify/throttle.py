"""Client-side pacing against Shopify's GraphQL cost bucket, from the throttleStatus every answer carries."""
from __future__ import annotations

from typing import Callable


class CostBucket:
    """What we last heard about the shop's bucket, refilled by the clock, and what each operation costs."""

    def __init__(self, clock: Callable[[], float]):
        self._clock = clock
        self._available: float | None = None
        self._maximum: float | None = None
        self._restore_rate: float | None = None
        self._heard_at = 0.0
        self._costs: dict[str, float] = {}

    def observe(self, operation: str, cost: dict | None) -> None:
        """Record the `extensions.cost` of an answer to `operation`."""
        if not isinstance(cost, dict):
            return
        if cost.get("requestedQueryCost") is not None:
            self._costs[operation] = float(cost["requestedQueryCost"])
        status = cost.get("throttleStatus") or {}
        if status.get("currentlyAvailable") is not None:
            self._available = float(status["currentlyAvailable"])
            self._maximum = float(status.get("maximumAvailable") or self._available)
            self._restore_rate = float(status.get("restoreRate") or 0)
            self._heard_at = self._clock()

    def available_now(self) -> float | None:
        if self._available is None:
            return None
        restored = (self._clock() - self._heard_at) * (self._restore_rate or 0)
        return min(self._maximum or float("inf"), self._available + restored)

    def wait_before(self, operation: str) -> float:
        """Seconds to wait so that the last known cost of `operation` fits; 0 when unknown or affordable."""
        cost, available = self._costs.get(operation), self.available_now()
        if cost is None or available is None or not self._restore_rate:
            return 0.0
        # A query dearer than the whole bucket can only ever run on a full one.
        needed = min(cost, self._maximum or cost)
        return max(0.0, (needed - available) / self._restore_rate)

    def wait_after_throttle(self, operation: str, default: float) -> float:
        """Seconds until a throttled `operation` fits, from the throttleStatus that came with the refusal."""
        wait = self.wait_before(operation)
        return wait if wait > 0 else default
