"""Turns Lambda's asynchronous on-failure records into failure reports.

Crashes, out-of-memory kills and timeouts can't be caught by the worker's code; Lambda delivers
them to the function's on-failure destination (the stack points it here) as a record holding the
original event (``requestPayload``: the task id and attempt) and the error. Marking the attempt
failed lets the Scavenger retry it at once instead of waiting for the expiry window.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sosw.errors import InvalidInputError
from sosw.managers.task import ReportResult, TaskManager


def report_failure_record(task_manager: TaskManager, record: Mapping[str, Any]) -> ReportResult:
    """Mark the attempt named by an on-failure destination record as failed."""
    payload = record.get("requestPayload") if isinstance(record, Mapping) else None
    if not isinstance(payload, Mapping) or not payload.get("task_id"):
        raise InvalidInputError("requestPayload.task_id", "the record names no task")
    context = record.get("requestContext") or {}
    response = record.get("responsePayload") or {}
    if not isinstance(response, Mapping):
        response = {"errorMessage": str(response)}
    condition = str(context.get("condition") or "Failed")
    attempt = payload.get("attempts")
    labourer_id = payload.get("labourer_id")
    return task_manager.mark_task_failed(
        str(payload["task_id"]),
        labourer_id=labourer_id if isinstance(labourer_id, str) and labourer_id else None,
        attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) and attempt >= 1 else None,
        error_type=str(response.get("errorType") or condition),
        error_message=str(response.get("errorMessage") or condition)[:1000],
    )
