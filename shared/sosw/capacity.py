"""How many tasks a labourer may start now, and why not more: the Orchestrator's decision as a pure function.

The Orchestrator calls :func:`free_slots` on every pass to size its claim; the console calls the same
function with the same inputs (the slot counters, the health, the lease's rate-limit window) to say why a
labourer is not running more. One copy of the rule, so the explanation can't drift from the behaviour.

    >>> free_slots(10, 0.5, running=5, rate_left=None)
    Slots(cap=5, running=5, desired=0, rate_left=None, max_simultaneous=10)
    >>> free_slots(10, 0.5, running=5, rate_left=None).limit
    'health'
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["REASONS", "Slots", "free_slots", "why_not_more"]

#: The reasons :func:`why_not_more` gives, in the order they are tested.
REASONS = ("nothing_queued", "tasks_delayed", "health", "cap_full", "rate_limit")


@dataclass(frozen=True)
class Slots:
    """The outcome of one decision: the cap after health, the running count, and how many may start now."""

    cap: int
    running: int
    desired: int
    rate_left: int | None
    max_simultaneous: int

    @property
    def limit(self) -> str | None:
        """What holds ``desired`` at zero: ``health`` (the cap scaled down), ``cap_full``, ``rate_limit``; or None."""
        if self.desired > 0:
            return None
        if self.running >= self.cap:
            return "health" if self.cap < self.max_simultaneous else "cap_full"
        return "rate_limit"


def free_slots(max_simultaneous: int, coefficient: float, running: int, rate_left: int | None) -> Slots:
    """desired = floor(max_simultaneous x coefficient[health]) - running, at least 0, then the rate limit's room.

    ``rate_left``: invocations the labourer's per-minute limit still allows (None: no limit).
    """
    cap = math.floor(max_simultaneous * coefficient)
    desired = max(0, cap - running)
    if rate_left is not None:
        desired = min(desired, rate_left)
    return Slots(cap, running, desired, rate_left, max_simultaneous)


def why_not_more(slots: Slots, *, queued: int, retry_waiting: bool) -> str | None:
    """Why the labourer is not starting more tasks now, or None when it may (and has tasks to start).

    ``queued``: tasks in its queue; ``retry_waiting``: tasks wait in the retry table (a retry or a delayed
    task) for their time. An empty queue is the first answer: no cap matters when there is nothing to start.
    """
    if queued <= 0:
        return "tasks_delayed" if retry_waiting else "nothing_queued"
    return slots.limit
