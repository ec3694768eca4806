"""What every connector's retry loop needs: jittered backoff, Retry-After, and "did the request leave at all"."""
from __future__ import annotations

import email.utils
import random
import time

import requests
from urllib3.exceptions import NewConnectionError


def jittered_delay(attempt: int, base_seconds: float, max_seconds: float) -> float:
    """Exponential backoff after failed attempt `attempt` (0-based), capped, with half of it random, so clients
    that failed together do not retry together."""
    ceiling = min(max_seconds, base_seconds * 2 ** attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def retry_after_seconds(response: requests.Response) -> float | None:
    """Retry-After as seconds, from either its number or its HTTP-date form; None when absent or unreadable."""
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
    """True when the request cannot have reached the server, so even a create is safe to send again."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return isinstance(reason, NewConnectionError)
    return False
