"""When a WooCommerce call is retried and how long to wait: the one place that decides it."""
from __future__ import annotations

from dataclasses import dataclass

from connectors.retry import jittered_delay, never_sent, retry_after_seconds

__all__ = ["RetryPolicy", "never_sent", "retry_after_seconds"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full-half jitter, capped; `Retry-After` wins when the shop sends one.

    WooCommerce itself has no rate limiter; 429s come from hosts and WAFs, 5xx from tired PHP workers.
    """

    max_attempts: int = 5  # attempts in total, the first included
    base_seconds: float = 1.0
    max_seconds: float = 30.0
    max_retry_after: float = 300.0  # a Retry-After above this is not waited for: the call fails RateLimited

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based)."""
        return jittered_delay(attempt, self.base_seconds, self.max_seconds)
