"""When a WooCommerce call is retried and how long to wait: the one place that decides it."""
from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass

import requests
from urllib3.exceptions import NewConnectionError


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
        ceiling = min(self.max_seconds, self.base_seconds * 2 ** attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def retry_after_seconds(response: requests.Response) -> float | None:
    """Retry-After as seconds, from its number or HTTP-date form; None when absent or unreadable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the shop, so even a create is safe to send again."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return isinstance(reason, NewConnectionError)
    return False
