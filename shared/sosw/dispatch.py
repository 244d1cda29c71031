"""Wake-ups: how dispatch follows the work between the Orchestrator's scheduled runs.

Three things wake a dispatch run, all best effort (the minute schedule still drains everything):

- a new task: the tasks table's stream (the stack's own tables; adopted sosw tables have none) reaches
  the Orchestrator, which relays the batch to a run of its own, so a long run never holds the shard;
- a report: the WorkerAssistant wakes the Orchestrator after a completion (a freed slot, when no run is
  following the labourer), and the Scavenger after a failure (which moves the task to wait for its
  retry at once); the Scavenger wakes the Orchestrator when a retry falls due within the minute;
- a run that reached its time limit with work left hands the rest to a fresh invocation.

A wake-up is an asynchronous Invoke naming the labourers, ``{"labourers": [...]}``. It never fails its
caller, and one container sends at most one per labourer and target per ``wake_interval_seconds``, so
a burst of reports costs a handful of invocations, not one each.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aws_lambda_powertools import Logger

__all__ = ["ORCHESTRATOR_FUNCTION_ENV", "SCAVENGER_FUNCTION_ENV", "Waker", "is_stream_batch", "labourers_of"]

logger = Logger(child=True)

ORCHESTRATOR_FUNCTION_ENV = "SOSW_ORCHESTRATOR_FUNCTION"
SCAVENGER_FUNCTION_ENV = "SOSW_SCAVENGER_FUNCTION"


def is_stream_batch(event: Any) -> bool:
    """A batch of the tasks table's stream records (as the event source mapping delivers them)."""
    return isinstance(event, Mapping) and isinstance(event.get("Records"), list)


def labourers_of(event: Any) -> list[str] | None:
    """The labourers a wake-up names; None (every labourer) for a scheduled run or an unknown event."""
    if not isinstance(event, Mapping):
        return None
    if is_stream_batch(event):
        found = []
        for record in event["Records"]:
            image = (record.get("dynamodb") or {}).get("NewImage") or {} if isinstance(record, Mapping) else {}
            labourer = (image.get("labourer_id") or {}).get("S")
            if isinstance(labourer, str) and labourer not in found:
                found.append(labourer)
        return found
    labourers = event.get("labourers")
    if isinstance(labourers, list) and all(isinstance(lab, str) for lab in labourers):
        return list(dict.fromkeys(labourers))
    return None


class Waker:
    """Best-effort asynchronous Invokes of a control function, coalesced per labourer."""

    def __init__(
        self,
        lambda_client: Any,
        function_name: str | None,
        *,
        interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.lambda_client = lambda_client
        self.function_name = function_name
        self.interval = interval
        self._monotonic = monotonic
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self.sent = 0

    def wake(self, labourer_ids: Iterable[str]) -> bool:
        """Invoke the function for these labourers, unless each was woken within the interval. Never raises."""
        if not self.function_name:
            return False
        now = self._monotonic()
        with self._lock:
            due = [lab for lab in dict.fromkeys(labourer_ids) if now - self._last.get(lab, -1e18) >= self.interval]
            for lab in due:
                self._last[lab] = now
        if not due:
            return False
        try:
            self.lambda_client.invoke(
                FunctionName=self.function_name, InvocationType="Event", Payload=json.dumps({"labourers": due})
            )
        except Exception as exc:  # a lost wake-up costs latency only: the schedule still drains the queue
            logger.warning("Wake-up not sent", extra={"function": self.function_name, "error": repr(exc)})
            return False
        self.sent += 1
        return True
