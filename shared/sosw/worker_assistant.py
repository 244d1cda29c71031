"""The WorkerAssistant: how workers report back, so their roles need no DynamoDB rights.

sosw's contract, so existing sosw workers keep working::

    {"action": "mark_task_as_completed" | "mark_task_as_failed", "task_id": ..., "stats": {...}, "result": {...}}

plus, from this project's workers, ``attempt`` (fencing), ``error`` ({"type", "message"}), ``task``
(their copy of the task, so a completion closes it at once) and the ``start_task`` action (the
duplicate-delivery guard, called synchronously before working).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sosw.errors import InvalidInputError
from sosw.managers.task import ReportResult, TaskManager
from sosw.processors import SoswWorkerAssistant

ACTIONS = ("mark_task_as_completed", "mark_task_as_failed", "start_task")


class WorkerAssistant(SoswWorkerAssistant):
    """``WorkerAssistant(task_manager).handle(event)``; or sosw's way (``sosw.processors``):
    ``WorkerAssistant(custom_config)``, then ``assistant(event)`` or ``assistant.mark_task_as_completed(task_id)``.
    """

    def __init__(self, task_manager: TaskManager | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self.tm = self._task_manager_of(task_manager, kwargs)

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """Apply one report; returns ``{"task_id", "outcome", "reason"}``. Bad events raise InvalidInputError."""
        if not isinstance(event, Mapping):
            raise InvalidInputError("event", f"expected a JSON object, got {type(event).__name__}")
        action = event.get("action")
        if action not in ACTIONS:
            raise InvalidInputError("action", f"expected one of {list(ACTIONS)}, got {action!r}")
        task_id = event.get("task_id")
        attempt = event.get("attempt")
        result: ReportResult
        if action == "start_task":
            result = self.tm.mark_task_started(
                task_id, attempt, token=event.get("token"), labourer_id=event.get("labourer_id")
            )
        elif action == "mark_task_as_completed" and isinstance(event.get("task"), Mapping) and attempt is not None:
            # This project's workers send their copy of the task: completed and closed in one transaction.
            task = event["task"]
            if task.get("task_id") != task_id:
                raise InvalidInputError("task.task_id", f"{task.get('task_id')!r} is not the reported {task_id!r}")
            result = self.tm.complete_and_archive_task(
                task, attempt=attempt, result=event.get("result"), stats=event.get("stats")
            )
        elif action == "mark_task_as_completed":
            result = self.tm.mark_task_completed(
                task_id, attempt=attempt, result=event.get("result"), stats=event.get("stats")
            )
        else:
            error = event.get("error") or {}
            if not isinstance(error, Mapping):
                raise InvalidInputError("error", f"expected {{'type', 'message'}}, got {error!r}")
            result = self.tm.mark_task_failed(
                task_id,
                attempt=attempt,
                error_type=str(error.get("type") or "Error"),
                error_message=str(error.get("message") or ""),
                result=event.get("result"),
                stats=event.get("stats"),
            )
        return {"task_id": task_id, "outcome": result.outcome.value, "reason": result.reason}
