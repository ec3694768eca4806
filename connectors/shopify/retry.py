"""How long a Shopify call waits before it is tried again."""
from __future__ import annotations

from dataclasses import dataclass

from connectors.retry import jittered_delay, never_sent, retry_after_seconds

__all__ = ["Backoff", "never_sent", "retry_after_seconds"]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, so clients that failed together do not retry together."""

    base_seconds: float = 1.0
    max_seconds: float = 30.0

    def delay(self, attempt: int) -> float:
        return jittered_delay(attempt, self.base_seconds, self.max_seconds)
