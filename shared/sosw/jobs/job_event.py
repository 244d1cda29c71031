"""sosw's job event as its Scheduler reads it (sosw 0.7.51): which labourer, which job schema, which days.

The event's parsing and its period words are here; how a job's attributes are chunked into task payloads is
in ``sosw.jobs.chunking``. Line references (``scheduler.py:NNN``) are to ``sosw/scheduler.py`` of sosw 0.7.51;
``helpers.py`` is ``sosw/components/helpers.py``. What sosw would refuse raises an ``InvalidInputError``
naming the field.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from sosw.errors import InvalidInputError

__all__ = ["PERIOD_PATTERNS", "chunkable_attrs", "extract_job", "iter_dates", "period_dates", "trim_arn_to_name"]

#: The period words, in the order sosw tries them (scheduler.py:345); ``re.match`` only anchors the start.
PERIOD_PATTERNS = (
    ("last_x_days", re.compile("last_[0-9]+_days")),
    ("x_days_back", re.compile("[0-9]+_days_back")),
    ("yesterday", re.compile("yesterday")),
    ("today", re.compile("today")),
    ("previous_x_days", re.compile("previous_[0-9]+_days")),
    ("last_week", re.compile("last_week")),
)

#: What sosw's default ``job_schema_variants['default']`` holds unless the config overrides it (scheduler.py:107).
SOSW_DEFAULT_SCHEMA: Mapping[str, Any] = {"chunkable_attrs": []}


def load_job(obj: Any, field_name: str) -> dict[str, Any]:
    """sosw's ``extract_job_from_payload.load`` (scheduler.py:642): a dict as is, else JSON text."""
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (str, bytes, bytearray)):
        try:
            obj = json.loads(obj)
        except ValueError as exc:
            raise InvalidInputError(field_name, f"not a JSON object: {exc}") from None
        if isinstance(obj, dict):
            return obj
    raise InvalidInputError(field_name, f"the job must be a JSON object (a mapping), not {type(obj).__name__}")


def trim_arn_to_name(arn: str) -> str:
    """helpers.py:1024 ``trim_arn_to_name``: the function name out of a name, an ARN, or an ARN with alias."""
    if arn.count(":") < 6 and "/" not in arn:
        return arn.split(":")[-1]
    pattern = (
        "(arn:aws:[0-9a-zA-Z-]{2,20}:[0-9a-zA-Z-]{0,12}:[0-9]{12}:[0-9a-zA-Z-]{2,20}[:/])?"
        "(?P<name>[0-9a-zA-Z_=,.@-]*)(:)?([0-9a-zA-Z$]*)?"
    )
    return re.search(pattern, arn).group("name")  # type: ignore[union-attr]  # every part is optional


def extract_job(event: Mapping[str, Any] | str) -> tuple[dict[str, Any], str]:
    """The job (a shallow copy, ``lambda_name`` removed) and its labourer id, as scheduler.py:646-650 and :195."""
    outer = load_job(event, "job")
    job = load_job(outer["job"], "job") if "job" in outer else outer
    if "lambda_name" not in job:  # scheduler.py:649, an assert
        raise InvalidInputError("lambda_name", "the job has no 'lambda_name': sosw can't tell which labourer runs it")
    raw_name = job.pop("lambda_name")
    if not isinstance(raw_name, str):  # trim_arn_to_name would fail on it
        raise InvalidInputError("lambda_name", f"must be a function name or ARN string, not {type(raw_name).__name__}")
    name = trim_arn_to_name(raw_name)
    if not name:  # scheduler.py:196: no labourer is registered under an empty name
        raise InvalidInputError("lambda_name", f"{raw_name!r} names no function (trims to an empty name)")
    if "file_name" in job:  # scheduler.py:147: sosw treats it as a sibling resuming a queue file, not a job
        raise InvalidInputError(
            "file_name", "a job with 'file_name' is a Scheduler sibling continuing a queue file; sosw does not chunk it"
        )
    return job, name


def chunkable_attrs(job_schema: Mapping[str, Any], job: Mapping[str, Any]) -> list[str]:
    """The schema sosw applies to this job (scheduler.py:159-177) and its chunkable attribute names."""
    if not isinstance(job_schema, Mapping):
        raise InvalidInputError("job_schema", f"must be a mapping, not {type(job_schema).__name__}")
    name = job.get("job_schema_name") or "default"
    if "job_schema_variants" in job_schema:
        if "chunkable_attrs" in job_schema:
            raise InvalidInputError(
                "job_schema", "give either one schema ('chunkable_attrs') or 'job_schema_variants', not both"
            )
        given = job_schema["job_schema_variants"]
        if not isinstance(given, Mapping):
            raise InvalidInputError("job_schema_variants", f"must be a mapping, not {type(given).__name__}")
        variants: Mapping[str, Any] = {"default": SOSW_DEFAULT_SCHEMA, **given}
    else:
        variants = {"default": job_schema}
    try:
        schema = variants[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name
        raise InvalidInputError(
            "job_schema_name", f"no job schema variant {name!r}; known: {sorted(map(str, variants))}"
        ) from None
    if not isinstance(schema, Mapping) or "chunkable_attrs" not in schema:
        raise InvalidInputError("chunkable_attrs", f"the job schema {name!r} has no 'chunkable_attrs'")
    try:
        # Literally sosw's expression (scheduler.py:174): entries are (name, settings) pairs, and a bare string
        # entry gives its first letter.
        attrs = [x[0] for x in schema["chunkable_attrs"]]
    except (TypeError, IndexError, KeyError) as exc:
        raise InvalidInputError(
            "chunkable_attrs", f"entries must be [name, settings] pairs: {schema['chunkable_attrs']!r} ({exc})"
        ) from None
    for attr in attrs:
        if not isinstance(attr, str):
            raise InvalidInputError("chunkable_attrs", f"attribute names must be strings, got {attr!r}")
        if attr.endswith("s"):  # scheduler.py:175
            raise InvalidInputError(
                "chunkable_attrs", f"use the singular form, sosw rejects names ending in 's': {attr!r}"
            )
    if not attrs:  # scheduler.py:202 indexes chunkable_attrs[0] unconditionally
        raise InvalidInputError("chunkable_attrs", f"the job schema {name!r} has no chunkable attributes")
    return attrs


# ------------------------------------------------------------------------------------------------------ dates


def period_dates(period: Any, today: datetime.date) -> tuple[datetime.date, int]:
    """The first day and the number of consecutive days a period word stands for (scheduler.py:257-397)."""
    if not isinstance(period, str):  # re.match raises TypeError on it
        raise InvalidInputError("period", f"must be a string, not {type(period).__name__}: {period!r}")
    method = next((name for name, pattern in PERIOD_PATTERNS if pattern.match(period)), None)
    if method is None:
        raise InvalidInputError(
            "period",
            f"unsupported period {period!r}; valid: 'last_X_days', 'X_days_back', 'yesterday', 'today', "
            "'previous_X_days', 'last_week'",
        )
    try:
        if method == "last_x_days":  # the N days before today, today excluded
            num = int(period.split("_")[1])
            first, count = today - datetime.timedelta(days=num), num
        elif method == "previous_x_days":  # the N days before those of last_N_days
            num = int(period.split("_")[1])
            first, count = today - datetime.timedelta(days=num) - datetime.timedelta(days=num), num
        elif method == "x_days_back":
            first, count = today - datetime.timedelta(days=int(period.split("_")[0])), 1
        elif method == "yesterday":
            first, count = today - datetime.timedelta(days=1), 1
        elif method == "today":
            first, count = today, 1
        else:  # last_week: Sunday to Saturday of the week before this one
            first, count = today - datetime.timedelta(days=today.weekday() + 8), 7
    except (OverflowError, ValueError):  # ValueError: a number too long for int()
        raise InvalidInputError("period", f"{period!r} reaches outside the calendar (before year 1)") from None
    return first, count


def iter_dates(first: datetime.date, count: int) -> Iterator[str]:
    """``YYYY-MM-DD`` strings, oldest first, as sosw's ``str(date)``."""
    one_day = datetime.timedelta(days=1)
    day = first
    for i in range(count):
        if i:
            day += one_day
        yield str(day)
