"""How long a failed or expired task waits before its next attempt.

``linear`` is sosw's: the worker's max duration times the attempts so far. ``exponential`` doubles
from ``retry_base`` up to ``retry_cap`` with full jitter, so that a burst of failures does not come
back as a burst.
"""

from __future__ import annotations

import random

from sosw.labourer import Labourer


def retry_delay(labourer: Labourer, attempts: int, rng: random.Random | None = None) -> int:
    """Seconds to wait after ``attempts`` attempts (>= 1) of a task of ``labourer``."""
    attempts = max(1, int(attempts))
    if labourer.retry_policy == "exponential":
        bound = min(labourer.retry_cap, labourer.retry_base * 2 ** (attempts - 1))
        return int((rng or random).uniform(0, bound))
    max_duration = labourer.get_attr("max_duration") if labourer.has_attr("max_duration") else labourer.duration
    return int(max_duration * attempts)
