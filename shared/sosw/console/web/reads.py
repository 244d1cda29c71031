"""What the console's pages read: bounded, whatever the length of the queues.

Every read here costs a fixed number of DynamoDB requests per page, at 100 queued tasks as at 100,000:
counts stop at one page and say so, the queue's length is estimated from its head and tail (as the
Orchestrator's metric is), running counts are the slot counters, and a listing reads at most
``PAGE_SIZE`` items a request. Filters with no index behind them (error type, dead against cancelled,
job, payload key) are applied to the items a request read, and the page says how many it read and
how many matched, with a cursor to continue.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from sosw.capacity import free_slots, why_not_more
from sosw.dynamo import Expressions, batch_get, count, deserialize_item, error_code
from sosw.errors import InvalidInputError
from sosw.labourer import Labourer
from sosw.leases import Lease, LeaseStore
from sosw.managers.ecology import HEALTH_LEVELS, EcologyManager
from sosw.managers.task import TaskManager
from sosw.orchestrator import DEFAULT_COEFFICIENTS, Orchestrator

__all__ = [
    "GROUP_SCAN",
    "PAGE_SIZE",
    "STATES",
    "LabourerRow",
    "TaskFilter",
    "TaskPage",
    "dead_groups",
    "decode_cursor",
    "encode_cursor",
    "list_tasks",
    "overview",
]

#: Items one listing request reads (DynamoDB's ``Limit``): the N of "N read, M matched".
PAGE_SIZE = 50
#: The dead tasks the error groups are built from: the newest of each labourer.
GROUP_SCAN = 200
STATES = ("queued", "running", "waiting", "completed", "dead", "cancelled")
CANCELLED = "Cancelled"


# ---------------------------------------------------------------------------------------------------- overview


@dataclass
class HealthReading:
    name: str
    value: float | None
    operator: str
    feelings: dict[int, float]
    level: int | None


@dataclass
class LabourerRow:
    labourer_id: str
    queued: int
    running: int
    cap: int
    max_simultaneous: int
    health: int
    health_name: str
    readings: list[HealthReading]
    waiting: int
    waiting_complete: bool
    dead: int
    dead_complete: bool
    oldest_queued_age: float | None
    next_retry_due: float | None
    rate_limit: int | None
    rate_left: int | None
    reason: str | None
    desired: int


def _coefficients(tm: TaskManager) -> dict[int, float]:
    # The Orchestrator's own reading of the setting (validated there), not a second copy of it.
    return Orchestrator._coefficients(tm.config.get("invocation_number_coefficient", DEFAULT_COEFFICIENTS))


def _health(ecology: EcologyManager, labourer: Labourer) -> tuple[int, list[HealthReading]]:
    """The labourer's health as the Orchestrator reads it, and each metric's value beside its thresholds."""
    health = ecology.get_labourer_status(labourer)  # caches each metric's value for the readings below
    readings = []
    for name, metric in labourer.health_metrics.items():
        value = ecology.metric_value(labourer, name, metric)
        level = None if value is None else ecology.feeling_for(labourer, name, metric, value)
        feelings = {int(k): float(v) for k, v in (metric.get("feelings") or {}).items()}
        operator = str(metric.get("feeling_comparison_operator", "__le__"))
        readings.append(HealthReading(name, value, operator, dict(sorted(feelings.items())), level))
    return health, readings


def _peek(leases: LeaseStore, labourer_id: str) -> Lease | None:
    """The labourer's rate-limit window; None on sosw's three tables alone (no leases table: no rate limit)."""
    try:
        return leases.peek(labourer_id)
    except ClientError as exc:
        if error_code(exc) == "ResourceNotFoundException":
            return None
        raise


def overview(tm: TaskManager, now: float) -> list[LabourerRow]:
    """One row per labourer, each from a fixed number of requests (see the module's docstring)."""
    _ = tm.get_db_field_name
    labourers = tm.open_run_window()
    ecology = tm.ecology_client
    ecology.register_task_manager(tm)  # a fresh read of the health metrics for this page
    running = tm.get_running_counts(labourers)
    coefficients = _coefficients(tm)
    leases = LeaseStore(tm.dynamo_db_client, tm.config["sosw_orchestrator_leases_table"])
    rows = []
    for labourer in labourers:
        snapshot = tm.get_queue_snapshot(labourer)
        queued = int(snapshot["queue_length"] or 0)
        waiting, waiting_complete = count(
            tm.dynamo_db_client,
            table=tm.retry_table,
            key_condition=Key(_("labourer_id")).eq(labourer.id),
            max_pages=1,
        )
        dead, dead_complete = count(
            tm.dynamo_db_client,
            table=tm.closed_table,
            index=tm.config["sosw_closed_tasks_labourer_status_index"],
            key_condition=Key(_("labourer_id_task_status")).eq(f"{labourer.id}_0"),
            max_pages=1,
        )
        next_due = tm.get_next_retry_due(labourer) if waiting else None
        health, readings = _health(ecology, labourer)
        rate_left = None
        if labourer.max_invocations_per_minute is not None:
            lease = _peek(leases, labourer.id)
            rate_left = (
                labourer.max_invocations_per_minute
                if lease is None
                else lease.invocations_left(labourer.max_invocations_per_minute, now)
            )
        slots = free_slots(labourer.max_simultaneous_invocations, coefficients[health], running[labourer.id], rate_left)
        reason = why_not_more(slots, queued=queued, retry_waiting=bool(waiting))
        rows.append(
            LabourerRow(
                labourer_id=labourer.id,
                queued=queued,
                running=slots.running,
                cap=slots.cap,
                max_simultaneous=labourer.max_simultaneous_invocations,
                health=health,
                health_name=HEALTH_LEVELS[health],
                readings=readings,
                waiting=waiting,
                waiting_complete=waiting_complete,
                dead=dead,
                dead_complete=dead_complete,
                oldest_queued_age=snapshot["oldest_queued_age"],
                next_retry_due=next_due,
                rate_limit=labourer.max_invocations_per_minute,
                rate_left=rate_left,
                reason=reason,
                desired=slots.desired,
            )
        )
    return rows


# ---------------------------------------------------------------------------------------------------- listings


def encode_cursor(key: Mapping[str, Any] | None) -> str | None:
    """DynamoDB's LastEvaluatedKey as URL-safe text (it is a key of the index read: no secret, no data)."""
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(text: str | None) -> dict[str, Any] | None:
    """The cursor of a page's "continue" link, checked to be a key and nothing else."""
    if not text:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error) as exc:
        raise InvalidInputError("cursor", "not a cursor this console made") from exc
    valid = (
        isinstance(key, dict)
        and 0 < len(key) <= 4
        and all(
            isinstance(name, str)
            and isinstance(value, dict)
            and len(value) == 1
            and next(iter(value)) in ("S", "N")
            and isinstance(next(iter(value.values())), str)
            for name, value in key.items()
        )
    )
    if not valid:
        raise InvalidInputError("cursor", "not a cursor this console made")
    return key


@dataclass(frozen=True)
class TaskFilter:
    """The task listing's filters, as the URL's query string carries them (times in UTC, epoch seconds)."""

    state: str = "queued"
    labourer: str = ""
    job: str = ""
    error: str = ""
    since: float | None = None
    until: float | None = None
    payload_key: str = ""
    payload_value: str = ""

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise InvalidInputError("state", f"expected one of {', '.join(STATES)}, got {self.state!r}")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise InvalidInputError("since", "the time range starts after it ends")
        if self.payload_value and not self.payload_key:
            raise InvalidInputError("payload_key", "a payload value needs its key")

    @property
    def unindexed(self) -> bool:
        """Filters applied to what a request read (no index behind them)."""
        return bool(self.job or self.error or self.payload_key or self.state in ("dead", "cancelled"))

    def matches(self, task: Mapping[str, Any], created_field: str, payload_field: str) -> bool:
        if self.job and task.get("job_id") != self.job:
            return False
        error = (task.get("last_error") or {}).get("type")
        if self.state == "dead" and error == CANCELLED:
            return False
        if self.state == "cancelled" and error != CANCELLED:
            return False
        if self.error and error != self.error:
            return False
        if self.state in ("queued", "running", "waiting"):
            created = task.get(created_field)
            if self.since is not None and (not isinstance(created, int | float) or created < self.since):
                return False
            if self.until is not None and (not isinstance(created, int | float) or created > self.until):
                return False
        if self.payload_key:
            payload = task.get(payload_field)
            if isinstance(payload, str):
                try:
                    payload = json.loads(payload)
                except ValueError:
                    return False
            if not isinstance(payload, Mapping) or self.payload_key not in payload:
                return False
            if self.payload_value and _text(payload[self.payload_key]) != self.payload_value:
                return False
        return True


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@dataclass
class TaskPage:
    tasks: list[dict[str, Any]]
    read: int
    cursor: str | None
    filtered: bool
    labourer: str
    requests: int = 0
    notes: list[str] = field(default_factory=list)


def list_tasks(tm: TaskManager, flt: TaskFilter, cursor: str | None, page_size: int = PAGE_SIZE) -> TaskPage:
    """One page of one state's tasks of one labourer: one Query of at most ``page_size`` items (and, for
    closed tasks, whose index holds keys only, one BatchGetItem of those)."""
    _ = tm.get_db_field_name
    labourers = tm.open_run_window()
    if not labourers:
        return TaskPage([], 0, None, flt.unindexed, "")
    labourer = _labourer(tm, flt.labourer) if flt.labourer else labourers[0]
    start_key = decode_cursor(cursor)
    request: dict[str, Any] = {"Limit": page_size}
    if start_key:
        request["ExclusiveStartKey"] = start_key
    start, _invoked, expired = (labourer.get_attr(a) for a in ("start", "invoked", "expired"))
    closed = flt.state in ("completed", "dead", "cancelled")
    if flt.state == "queued":
        key = Key(_("labourer_id")).eq(labourer.id) & Key(_("greenfield")).lt(start)
        table, index = tm.tasks_table, tm.config["dynamo_db_config"]["index_greenfield"]
    elif flt.state == "running":
        key = Key(_("labourer_id")).eq(labourer.id) & Key(_("greenfield")).gt(expired)
        table, index = tm.tasks_table, tm.config["dynamo_db_config"]["index_greenfield"]
    elif flt.state == "waiting":
        key = Key(_("labourer_id")).eq(labourer.id)
        table, index = tm.retry_table, tm.config["sosw_retry_tasks_greenfield_index"]
    else:
        key = Key(_("labourer_id_task_status")).eq(f"{labourer.id}_{1 if flt.state == 'completed' else 0}")
        if flt.since is not None and flt.until is not None:
            key = key & Key(_("closed_at")).between(flt.since, flt.until)
        elif flt.since is not None:
            key = key & Key(_("closed_at")).gte(flt.since)
        elif flt.until is not None:
            key = key & Key(_("closed_at")).lte(flt.until)
        table, index = tm.closed_table, tm.config["sosw_closed_tasks_labourer_status_index"]
        request["ScanIndexForward"] = False  # newest first
    ex = Expressions()
    response = tm.dynamo_db_client.query(
        TableName=table, IndexName=index, KeyConditionExpression=ex.key_condition(key), **ex.params(), **request
    )
    requests = 1
    items = [deserialize_item(i) for i in response.get("Items", [])]
    read = len(items)
    if closed and items:
        keys = [{_("task_id"): i[_("task_id")]} for i in items]
        found = {t[_("task_id")]: t for t in batch_get(tm.dynamo_db_client, table, keys, consistent=True)}
        requests += 1
        items = [found[k[_("task_id")]] for k in keys if k[_("task_id")] in found]
    if flt.state == "running":
        items = [t for t in items if _("completed_at") not in t and _("failed_at") not in t]
    tasks = [t for t in items if flt.matches(t, _("created_at"), _("payload"))]
    return TaskPage(tasks, read, encode_cursor(response.get("LastEvaluatedKey")), flt.unindexed, labourer.id, requests)


def _labourer(tm: TaskManager, labourer_id: str) -> Labourer:
    labourer = tm.get_labourer(labourer_id)
    if labourer is None:
        known = ", ".join(sorted(lab.id for lab in tm.get_labourers()))
        raise InvalidInputError("labourer", f"unknown labourer {labourer_id!r}; configured: {known}")
    return next(lab for lab in tm.open_run_window() if lab.id == labourer.id)


# ---------------------------------------------------------------------------------------------------- dead tasks


@dataclass
class ErrorGroup:
    labourer_id: str
    error_type: str
    first_line: str
    count: int
    newest_closed_at: float | None
    task_ids: list[str]


def signature(task: Mapping[str, Any]) -> tuple[str, str, str]:
    """A dead task's error signature: its labourer, its last error's type and its message's first line."""
    error = task.get("last_error") or {}
    message = str(error.get("message") or "")
    first_line = message.strip().splitlines()[0][:200] if message.strip() else ""
    return str(task.get("labourer_id")), str(error.get("type") or "?"), first_line


def dead_groups(
    tm: TaskManager, labourer: str = "", error: str = "", since: float | None = None, until: float | None = None
) -> tuple[list[ErrorGroup], int, bool]:
    """Dead tasks grouped by signature, over the newest ``GROUP_SCAN`` of each labourer (cancelled ones apart).

    Returns the groups, how many dead tasks were read, and whether there may be older ones not read.
    """
    labourers = [_labourer(tm, labourer)] if labourer else tm.get_labourers()
    groups: dict[tuple[str, str, str], ErrorGroup] = {}
    read = 0
    more = False
    for lab in labourers:
        # The error filter is applied to the newest GROUP_SCAN read, never passed down: a rare error type
        # would make get_dead_tasks read on through every older dead task to find enough of them.
        tasks = tm.get_dead_tasks(lab, closed_after=since, closed_before=until, limit=GROUP_SCAN)
        read += len(tasks)
        more = more or len(tasks) >= GROUP_SCAN
        for task in tasks:
            sig = signature(task)
            if (error and sig[1] != error) or (sig[1] == CANCELLED and error != CANCELLED):
                continue
            group = groups.get(sig)
            if group is None:
                group = groups[sig] = ErrorGroup(*sig, 0, task.get("closed_at"), [])
            group.count += 1
            group.task_ids.append(task["task_id"])
    return sorted(groups.values(), key=lambda g: (-g.count, g.labourer_id, g.error_type)), read, more
