"""The WorkerAssistant: how workers report back, so their roles need no DynamoDB rights.

sosw's contract, so existing sosw workers keep working::

    {"action": "mark_task_as_completed" | "mark_task_as_failed", "task_id": ..., "stats": {...}, "result": {...}}

plus, from this project's workers, ``attempt`` (fencing), ``error`` ({"type", "message"}), ``task``
(their copy of the task, so a completion closes it at once) and the ``start_task`` action (the
duplicate-delivery guard, called synchronously before working).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sosw.dispatch import Waker
from sosw.dynamo import is_transient
from sosw.errors import InvalidInputError
from sosw.managers.task import ReportResult, TaskManager
from sosw.metrics import put_labourer_metric
from sosw.processors import SoswWorkerAssistant

ACTIONS = ("mark_task_as_completed", "mark_task_as_failed", "start_task")


class WorkerAssistant(SoswWorkerAssistant):
    """``WorkerAssistant(task_manager).handle(event)``; or sosw's way (``sosw.processors``):
    ``WorkerAssistant(custom_config)``, then ``assistant(event)`` or ``assistant.mark_task_as_completed(task_id)``.

    After a report is written it wakes dispatch (see :mod:`sosw.dispatch`) when that may be needed.
    """

    def __init__(
        self,
        task_manager: TaskManager | Mapping[str, Any] | None = None,
        *,
        orchestrator: Waker | None = None,
        scavenger: Waker | None = None,
        **kwargs: Any,
    ) -> None:
        self.tm = self._task_manager_of(task_manager, kwargs)
        self.orchestrator = orchestrator
        self.scavenger = scavenger

    def handle(self, event: Mapping[str, Any], remaining: Callable[[], float] | None = None) -> dict[str, Any]:
        """Apply one report; returns ``{"task_id", "outcome", "reason"}``. Bad events raise InvalidInputError.

        DynamoDB's refusals under load (throttles, transaction conflicts) are retried within ``remaining`` (the
        Lambda's time left). Past that the report raises, so that Lambda delivers it again (nothing was
        written), and the ``reports_raised`` metric counts it.
        """
        self.tm.remaining_seconds = remaining
        try:
            return self._handle(event)
        except Exception as exc:
            if is_transient(exc):
                task = event.get("task") if isinstance(event.get("task"), Mapping) else {}
                labourer_id = event.get("labourer_id") or task.get("labourer_id")
                put_labourer_metric("reports_raised", 1, str(labourer_id or "unknown"))
            raise

    def _handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
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
                task_id,
                attempt=attempt,
                result=event.get("result"),
                stats=event.get("stats"),
                labourer_id=_text(event.get("labourer_id")),
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
                labourer_id=_text(event.get("labourer_id")),
            )
        if result and action != "start_task":
            self._wake(action, result.labourer_id, event)
        return {"task_id": task_id, "outcome": result.outcome.value, "reason": result.reason}

    def _wake(self, action: str, labourer_id: str | None, event: Mapping[str, Any]) -> None:
        """A failure wakes the Scavenger (the task waits for its retry at once, not at the next minute). A
        completion frees a slot: a run following the labourer refills it by itself, so the Orchestrator is
        woken only when none may be (the task ran longer than a run follows without progress, or its run
        time is unknown: sosw's workers don't send their task)."""
        if labourer_id is None:
            return
        if action == "mark_task_as_failed":
            if self.scavenger is not None:
                self.scavenger.wake([labourer_id])
            return
        task = event.get("task")
        greenfield = task.get("greenfield") if isinstance(task, Mapping) else None
        if isinstance(greenfield, (int, float)) and not isinstance(greenfield, bool):
            ran = self.tm.clock.now() - (greenfield - self.tm.config["greenfield_invocation_delta"])
            if ran < float(self.tm.config.get("dispatch_wait_seconds", 20)) / 2:
                return
        if self.orchestrator is not None:
            self.orchestrator.wake([labourer_id])


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
