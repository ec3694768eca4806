"""When a failed job runs again: exponential backoff with jitter, the one retry policy for all kinds."""
from __future__ import annotations

import random


def retry_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait after the `attempt`-th failure.

    "Equal jitter": half the exponential step is fixed, half random, so delays keep growing
    from one attempt to the next while workers that failed together do not retry together.
    """
    rng = rng or random
    step = min(cap, base * (2 ** max(0, attempt - 1)))
    return step / 2 + rng.uniform(0, step / 2)
