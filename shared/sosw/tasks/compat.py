"""sosw's view of a task, beside this project's: how sosw 0.7.51 hands tasks to its users and which fields
its WorkerAssistant writes, so code and dashboards built on sosw keep working.

- **Payload**: stored as a JSON string, as sosw stores it; sosw's DynamoDB client decodes it on every read,
  so its users write ``task["payload"]["key"]``. The facade decodes it on the way out (:func:`decoded`)
  and encodes a decoded one on the way back in (:func:`stored`); the step modules work on stored rows.
- **Report fields**: sosw's WorkerAssistant writes each key of a report's ``result`` and ``stats`` as a
  top-level attribute, ``result_<key>`` and ``stat_<key>`` (typed as sosw types them), and counts
  ``failed_attempts``. They are written beside this project's ``result``, ``stats`` and ``last_error``:
  sosw's fields are a subset of ours.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sosw.dynamo import to_dynamo_value
from sosw.validation import payload_to_json

__all__ = [
    "FAILED_ATTEMPTS",
    "REPORT_PREFIXES",
    "decoded",
    "decoded_all",
    "is_report_field",
    "report_fields",
    "stored",
    "stored_all",
]

#: sosw's WorkerAssistant counts every failure report here (never reset).
FAILED_ATTEMPTS = "failed_attempts"
#: Prefixes of the top-level fields sosw's WorkerAssistant writes from a report's result and stats.
REPORT_PREFIXES = ("result_", "stat_")


def decoded(task: Mapping[str, Any]) -> dict[str, Any]:
    """The task as sosw's readers return it: ``payload`` decoded when it holds a JSON object (else kept).

    sosw decodes a string that starts with ``{`` and ends with ``}``, and keeps it when it does not parse
    (sosw's own archive writes a Python repr there). Only ``payload`` is decoded here: it is the one field
    known to hold JSON text, so the facade can always turn it back into what is stored (:func:`stored`).
    """
    task = dict(task)
    payload = task.get("payload")
    if isinstance(payload, str) and payload.startswith("{") and payload.endswith("}"):
        with contextlib.suppress(ValueError):
            task["payload"] = json.loads(payload)
    return task


def decoded_all(tasks: Iterable[Any]) -> list[Any]:
    """:func:`decoded` for each task of a reader's list (ids are left as they are)."""
    return [decoded(t) if isinstance(t, Mapping) else t for t in tasks]


def decoded_or_count(tasks: Any) -> Any:
    """:func:`decoded_all` of a reader's list; a count (``count=True``) is left as it is."""
    return tasks if isinstance(tasks, int) else decoded_all(tasks)


def decoded_found(found: tuple[str, Mapping[str, Any]]) -> tuple[str, dict[str, Any]]:
    """``(where, task)`` of ``find_task``, the task decoded."""
    return found[0], decoded(found[1])


def stored(task: Any) -> Any:
    """A task handed back by a caller, with its payload as stored: JSON text (a decoded payload is encoded)."""
    if isinstance(task, Mapping) and "payload" in task and not isinstance(task["payload"], str | None):
        return {**task, "payload": payload_to_json(task["payload"])}
    return task


def stored_all(tasks: Any) -> Any:
    """:func:`stored` for each task of a list (anything else is left for the step to refuse)."""
    return [stored(t) for t in tasks] if isinstance(tasks, list) else tasks


def is_report_field(name: str) -> bool:
    """A field sosw's WorkerAssistant wrote from a report (``result_<key>``, ``stat_<key>``)."""
    return name.startswith(REPORT_PREFIXES)


def report_fields(result: Any, stats: Any) -> dict[str, Any]:
    """sosw's top-level fields for a report: ``stat_<key>`` then ``result_<key>``, typed as sosw types them.

    sosw writes them only when ``result`` and ``stats`` are dicts. Its typing (``dict_to_dynamo`` with
    ``strict=False``): a bool or the text ``"true"`` / ``"false"`` is a boolean, a number or numeric text a
    number, other text stays text, a dict a map, a list a list, None null. Our ``result`` and ``stats`` keep
    the values exactly as reported.
    """
    fields: dict[str, Any] = {}
    for prefix, values in (("stat_", stats), ("result_", result)):
        if isinstance(values, Mapping):
            fields.update({f"{prefix}{key}": _sosw_typed(value) for key, value in values.items()})
    return fields


def _sosw_typed(value: Any) -> Any:
    """One value as sosw's ``dict_to_dynamo(strict=False)`` types it, in what boto3's serializer takes."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        digits = value.replace(".", "", 1)
        if value.isascii() and digits.isdigit():  # sosw: isnumeric(), with at most one dot
            return Decimal(value)
        return value
    if isinstance(value, int | float):
        return Decimal(repr(value)) if isinstance(value, float) else value
    if isinstance(value, Mapping):
        return {str(k): _sosw_typed(v) for k, v in value.items()}
    return to_dynamo_value(value)  # lists and the rest: boto3's serializer, as sosw does (floats as numbers)
