"""Checks run before anything is written: payloads, item sizes, task dicts.

Every failure is an :class:`~sosw.errors.InvalidInputError` naming the field and the limit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sosw.errors import InvalidInputError


def item_size(item: Mapping[str, Any]) -> int:
    """An upper estimate of DynamoDB's size of ``item`` in bytes (names plus values, as DynamoDB counts)."""
    return sum(len(name.encode()) + _value_size(value) for name, value in item.items())


def _value_size(value: Any) -> int:
    if value is None or isinstance(value, bool):
        return 1
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, (int, float, Decimal)):
        return 21  # DynamoDB stores at most 38 digits in at most 21 bytes
    if isinstance(value, Mapping):
        return 3 + sum(len(str(k).encode()) + 1 + _value_size(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return 3 + sum(1 + _value_size(v) for v in value)
    raise InvalidInputError("task", f"value of type {type(value).__name__} can't be stored in DynamoDB")


def payload_to_json(payload: Any, field: str = "payload") -> str:
    """``payload`` as a JSON string; an InvalidInputError if it is not JSON-serialisable."""
    try:
        return json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(field, f"must be JSON-serialisable: {exc}") from exc


def check_task_size(
    task: Mapping[str, Any], config: Mapping[str, Any], field: str = "payload", *, payload_field: str = "payload"
) -> None:
    """Refuse a task that would leave too little room for its result and stats, or couldn't be invoked."""
    limit = config["max_task_item_bytes"] - config["task_item_headroom_bytes"]
    size = item_size(task)
    if size > limit:
        raise InvalidInputError(
            field,
            f"the task would take {size} bytes in DynamoDB; at most {limit} are allowed "
            f"({config['max_task_item_bytes']} per item less {config['task_item_headroom_bytes']} "
            "kept for the result and stats)",
            limit=limit,
        )
    invoke_limit = config["max_invoke_payload_bytes"]
    payload = task.get(payload_field, "")
    if isinstance(payload, str) and len(payload.encode()) > invoke_limit:
        raise InvalidInputError(
            field, f"{len(payload.encode())} bytes is over Lambda's asynchronous Invoke limit", limit=invoke_limit
        )


def check_payload_dict(payload: Any, field: str = "payload") -> dict[str, Any]:
    """A payload given as a dict (the new methods take a dict, never kwargs)."""
    if not isinstance(payload, Mapping):
        raise InvalidInputError(field, f"expected a dict, got {type(payload).__name__}")
    for key in payload:
        if not isinstance(key, str):
            raise InvalidInputError(field, f"keys must be strings, got {key!r}")
    return dict(payload)


def check_task_id(task_id: Any, field: str = "task_id") -> str:
    if not isinstance(task_id, str) or not task_id:
        raise InvalidInputError(field, f"expected a non-empty string, got {task_id!r}")
    if len(task_id.encode()) > 1024:
        raise InvalidInputError(field, "is too long", limit="1024 bytes")
    return task_id


def check_delay(delay: Any, field: str = "delay", maximum: int | None = None) -> int:
    """A delay in seconds: a finite number from 0 to ``maximum`` (config ``max_delay_seconds``)."""
    limit = ">= 0" if maximum is None else f"0 to {maximum} (max_delay_seconds)"
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not math.isfinite(delay) or delay < 0:
        raise InvalidInputError(field, f"expected a number of seconds, {limit}, got {delay!r}", limit=limit)
    if maximum is not None and delay > maximum:
        raise InvalidInputError(field, f"{delay!r} seconds is over the limit of {maximum} (max_delay_seconds)", limit)
    return int(delay)


def check_number(value: Any, field: str, minimum: float | None = None) -> int | float:
    """A finite number, at least ``minimum``; a numeric string is converted."""
    if isinstance(value, str):
        try:
            value = float(value) if "." in value else int(value)
        except ValueError:
            raise InvalidInputError(field, f"expected a number, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInputError(field, f"expected a number, got {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidInputError(field, f"must be >= {minimum}, got {value!r}", limit=f">= {minimum}")
    return value


def check_attempt(attempt: Any) -> int:
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise InvalidInputError("attempt", f"expected an integer >= 1, got {attempt!r}", limit=">= 1")
    return attempt
