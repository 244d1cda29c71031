"""The differential suite's machinery: the same calls to sosw 0.7.51 and to this package, and the comparison.

Each side works on its own tables, created from sosw's definitions (``sosw.schema``, ``sosw_definitions=True``)
on one DynamoDB Local, seeded with the same rows. sosw runs in its own virtualenv (``sosw_side.py``); this
package runs here, through the same call list (``OursSide``). Then:

- **return values** compare call by call: every field sosw returns must be there with sosw's value (ours may
  return more: sosw's readers drop what its row mapper does not list, results and errors included);
- **rows** compare table by table, the same way;
- a **deliberate difference** is declared where it is expected, with why, and its own check: it is asserted
  to be exactly that difference, never skipped.

Times (``created_at``, invoked greenfields, ``completed_at``, ``closed_at``, ...) are taken by each side's
clock a few seconds apart: numbers above 10^9 compare within ``TIME_TOLERANCE`` seconds.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3

from sosw.dynamo import deserialize_item, serialize_item
from sosw.labourer import Labourer
from sosw.managers.task import TaskManager
from sosw.orchestrator import Orchestrator
from sosw.scavenger import Scavenger
from sosw.schema import table_schemas
from sosw.worker_assistant import WorkerAssistant

ROOT = Path(__file__).resolve().parents[2]
SOSW_PYTHON = ROOT / ".cache" / "bench-sosw-venv" / "bin" / "python"
SOSW_SIDE = Path(__file__).with_name("sosw_side.py")
TIME_TOLERANCE = 30
DEAD_TOPIC = "arn:aws:sns:us-east-1:000000000000:dead"
#: The attributes of sosw's Labourer that a labourer is compared by (read from ours with getattr).
LABOURER_VIEW = (
    "id",
    "arn",
    "duration",
    "cooldown",
    "start",
    "invoked",
    "expired",
    "health",
    "health_metrics",
    "max_attempts",
    "max_duration",
    "average_duration",
    "max_simultaneous_invocations",
)


@dataclass(frozen=True)
class Differs:
    """A deliberate difference: ``check(sosw, ours)`` must hold (each a call's record, or a row's value)."""

    why: str
    check: Callable[[Any, Any], bool]


@dataclass
class Call:
    method: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    target: str = "task_manager"
    expect: Differs | None = None  # None: the same

    def spec(self) -> dict[str, Any]:
        return {"method": self.method, "args": self.args, "kwargs": self.kwargs, "target": self.target}


# ------------------------------------------------------------------ the two sides


class StubLambda:
    """The Lambda client replaced as sosw users' tests replace it (the same stand-in on both sides)."""

    def __init__(self, timeout: int) -> None:
        self.timeout = timeout
        self.invocations: list[dict[str, Any]] = []

    def get_function_configuration(self, FunctionName: str, **_: Any) -> dict[str, Any]:
        return {"FunctionName": FunctionName, "Timeout": self.timeout}

    def invoke(self, FunctionName: str, InvocationType: str = "", Payload: str = "", **_: Any) -> dict[str, Any]:
        self.invocations.append(
            {"FunctionName": FunctionName, "InvocationType": InvocationType, "Payload": json.loads(Payload or "null")}
        )
        return {"StatusCode": 202}


class StubSns:
    """The SNS client replaced (``scavenger.sns_client = ...``): records what is published."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def publish(self, **kwargs: Any) -> dict[str, Any]:
        self.messages.append(kwargs)
        return {"MessageId": str(len(self.messages))}


def to_json(value: Any) -> Any:
    if isinstance(value, Labourer):
        return {"__labourer__": {k: to_json(getattr(value, k)) for k in LABOURER_VIEW if _has(value, k)}}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _has(labourer: Labourer, name: str) -> bool:
    try:
        getattr(labourer, name)
    except AttributeError:
        return False
    return True


class OursSide:
    """This package through the same call list as ``sosw_side.py``, with the same stand-ins."""

    def __init__(self, config: Mapping[str, Any], lambda_timeout: int = 60, int_labourer_keys: bool = False):
        self.config = copy.deepcopy(dict(config))
        if int_labourer_keys:
            self.config["labourers"] = {
                int(k) if str(k).isdigit() else k: v for k, v in self.config["labourers"].items()
            }
        self.int_keys = int_labourer_keys
        self.lambda_ = StubLambda(lambda_timeout)
        self.sns = StubSns()
        self.tm = TaskManager(copy.deepcopy(self.config))
        self.tm.lambda_client = self.lambda_
        self.processors: dict[str, Any] = {}

    def target(self, name: str) -> Any:
        if name == "task_manager":
            return self.tm
        if name not in self.processors:
            if name == "worker_assistant":
                self.processors[name] = WorkerAssistant(
                    custom_config={"dynamo_db_config": self.config["dynamo_db_config"]}
                )
            elif name == "orchestrator":
                self.processors[name] = Orchestrator(custom_config={"task_config": copy.deepcopy(self.config)})
                self.processors[name].task_client.lambda_client = self.lambda_
            elif name == "scavenger":
                scavenger = Scavenger(
                    custom_config={"task_config": copy.deepcopy(self.config), "sns_config": {"recipient": DEAD_TOPIC}}
                )
                scavenger.task_client.lambda_client = self.lambda_
                scavenger.sns_client = self.sns
                self.processors[name] = scavenger
            else:
                raise ValueError(name)
        return self.processors[name]

    def run(self, calls: Sequence[Call]) -> list[dict[str, Any]]:
        results: list[Any] = []
        records = []

        def resolve(value: Any) -> Any:
            if isinstance(value, dict):
                if set(value) == {"$labourer"}:
                    return self.tm.get_labourer(value["$labourer"])
                if set(value) == {"$new_labourer"}:
                    return Labourer(**value["$new_labourer"])
                if set(value) == {"$ref"}:
                    out = results[value["$ref"][0]]
                    for key in value["$ref"][1:]:
                        out = out[key]
                    return copy.deepcopy(out)
                return {k: resolve(v) for k, v in value.items()}
            if isinstance(value, list):
                return [resolve(v) for v in value]
            return value

        for i, call in enumerate(calls):
            record: dict[str, Any] = {"i": i, "call": call.method}
            try:
                args, kwargs = resolve(call.args), resolve(call.kwargs)
                if call.target == "sosw":
                    value = self._pseudo(call.method, kwargs)
                else:
                    value = getattr(self.target(call.target), call.method)(*args, **kwargs)
                results.append(value)
                record["result"] = to_json(value)
            except Exception as err:  # every failure is part of the answer
                results.append(None)
                record["exception"] = type(err).__name__
                record["message"] = str(err)
            records.append(record)
        return records

    def _pseudo(self, method: str, kwargs: dict[str, Any]) -> Any:
        if method == "register_labourers":
            return self.tm.register_labourers()
        if method == "invocations":
            return list(self.lambda_.invocations)
        if method == "sns_messages":
            return list(self.sns.messages)
        if method == "new_labourer":
            labourer = Labourer(**kwargs)
            return {k: getattr(labourer, k) for k in (*LABOURER_VIEW, *kwargs) if _has(labourer, k)}
        if method == "labourer_attr":
            return getattr(kwargs["labourer"], kwargs["attr"])
        raise ValueError(method)


def sosw_surface(config: Mapping[str, Any]) -> dict[str, Any]:
    """sosw 0.7.51's public surface (``sosw_side.surface``): its classes built with ``config``, described."""
    (record,) = run_sosw(config, [], surface=True)
    return record["surface"]


def run_sosw(config: Mapping[str, Any], calls: Sequence[Call], **options: Any) -> list[dict[str, Any]]:
    """The calls against sosw 0.7.51, in its own virtualenv, on the same DynamoDB Local."""
    if not SOSW_PYTHON.is_file():
        raise RuntimeError(f"sosw 0.7.51's virtualenv is missing ({SOSW_PYTHON}): `make test` creates it")
    spec = {"config": config, "calls": [c.spec() for c in calls], **options}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run(
        [str(SOSW_PYTHON), str(SOSW_SIDE)],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"sosw side failed: {out.stderr[-3000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


# ------------------------------------------------------------------ tables


#: sosw's default greenfield_invocation_delta: a greenfield past now by this much is an invoked task.
DELTA = 31_557_600


def queued(task_id: str, labourer_id: str, greenfield: int, created_at: int | None = None) -> dict[str, Any]:
    """A task row as sosw writes it, queued at ``greenfield`` (created now unless ``created_at`` says when)."""
    return {
        "task_id": task_id,
        "labourer_id": labourer_id,
        "greenfield": greenfield,
        "attempts": 0,
        "created_at": int(time.time()) if created_at is None else created_at,
        "payload": json.dumps({"n": task_id}),
    }


def seed(config: Mapping[str, Any], rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
    """Put the same rows, by table role, into a side's tables (raw PutItem, exactly as given)."""
    client = boto3.client("dynamodb")
    schemas = table_schemas(config, sosw_definitions=True)
    for role, items in rows.items():
        for item in items:
            client.put_item(TableName=schemas[role].name, Item=serialize_item(item))


def rows(config: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """Every row of the tasks, retry and closed tables, by role and task id."""
    client = boto3.client("dynamodb")
    schemas = table_schemas(config, sosw_definitions=True)
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for role in ("tasks", "retry", "closed"):
        items = {}
        for page in client.get_paginator("scan").paginate(TableName=schemas[role].name, ConsistentRead=True):
            for raw in page["Items"]:
                item = deserialize_item(raw)
                items[str(item["task_id"])] = item
        found[role] = items
    return found


# ------------------------------------------------------------------ comparison


def plain(value: Any) -> Any:
    """sosw's ``{"$decimal": ...}`` marks as numbers, so both sides' values compare as values."""
    if isinstance(value, dict):
        if set(value) == {"$decimal"}:
            number = Decimal(value["$decimal"])
            return int(number) if number == number.to_integral_value() else float(number)
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def mismatches(sosw: Any, ours: Any, path: str = "") -> list[str]:
    """Where ``ours`` does not hold what ``sosw`` holds (sosw's fields must be there with sosw's values)."""
    sosw, ours = plain(sosw), plain(ours)
    if isinstance(sosw, dict):
        if not isinstance(ours, dict):
            return [f"{path}: sosw {sosw!r}, ours {ours!r}"]
        found = []
        for key, value in sosw.items():
            if key not in ours:
                found.append(f"{path}.{key}: missing in ours (sosw {value!r})")
            else:
                found += mismatches(value, ours[key], f"{path}.{key}")
        return found
    if isinstance(sosw, list):
        if not isinstance(ours, list) or len(sosw) != len(ours):
            return [f"{path}: sosw {sosw!r}, ours {ours!r}"]
        if all(isinstance(t, dict) and "task_id" in t and "greenfield" in t for t in (*sosw, *ours)):
            # Tasks claimed in the same second share a greenfield, and an index orders those as it likes:
            # compare in (greenfield, task_id) order on both sides.
            sosw, ours = (sorted(side, key=lambda t: (t["greenfield"], t["task_id"])) for side in (sosw, ours))
        return [m for i, (s, o) in enumerate(zip(sosw, ours, strict=True)) for m in mismatches(s, o, f"{path}[{i}]")]
    if isinstance(sosw, bool) or isinstance(ours, bool):
        return [] if sosw is ours else [f"{path}: sosw {sosw!r}, ours {ours!r}"]
    if isinstance(sosw, int | float) and isinstance(ours, int | float):
        if sosw == ours or (sosw > 1e9 and ours > 1e9 and abs(sosw - ours) <= TIME_TOLERANCE):
            return []
        return [f"{path}: sosw {sosw!r}, ours {ours!r}"]
    return [] if sosw == ours else [f"{path}: sosw {sosw!r}, ours {ours!r}"]


def same(sosw: Any, ours: Any) -> bool:
    return not mismatches(sosw, ours)


@dataclass
class Outcome:
    """What a scenario produced on both sides."""

    calls: list[Call]
    sosw: list[dict[str, Any]]
    ours: list[dict[str, Any]]
    sosw_rows: dict[str, dict[str, dict[str, Any]]]
    ours_rows: dict[str, dict[str, dict[str, Any]]]
    differences: list[str] = field(default_factory=list)  # the deliberate ones met, for the report

    def check_calls(self) -> None:
        problems = []
        for call, s, o in zip(self.calls, self.sosw, self.ours, strict=True):
            label = f"#{s['i']} {s['call']}"
            if call.expect is not None:
                if not call.expect.check(s, o):
                    problems.append(f"{label}: expected difference ({call.expect.why}) not met: sosw {s}, ours {o}")
                else:
                    self.differences.append(f"{label}: {call.expect.why}")
            elif "exception" in s or "exception" in o:
                problems.append(f"{label}: sosw {s}, ours {o}")
            else:
                problems += [f"{label}{m}" for m in mismatches(s["result"], o["result"])]
        assert not problems, "\n".join(problems)

    def check_rows(self, expected: Mapping[tuple[str, str, str | None], Differs] | None = None) -> None:
        """Every sosw row is in our tables with sosw's fields and values, but for the declared differences.

        ``expected`` keys: ``(role, task_id, field)`` (a field's difference: ``check(sosw value, ours value)``,
        the ours value being ``None`` if we don't have the field), or ``(role, task_id, None)`` (the whole row:
        ``check(sosw row, ours row or None)``).
        """
        expected = dict(expected or {})
        problems = []
        for role, sosw_items in self.sosw_rows.items():
            ours_items = self.ours_rows[role]
            for task_id in sorted(set(sosw_items) | set(ours_items)):
                s, o = sosw_items.get(task_id), ours_items.get(task_id)
                row_rule = expected.pop((role, task_id, None), None)
                if row_rule is not None:
                    if row_rule.check(s, o):
                        self.differences.append(f"{role}/{task_id}: {row_rule.why}")
                    else:
                        problems.append(f"{role}/{task_id}: expected ({row_rule.why}) not met: sosw {s}, ours {o}")
                    continue
                if s is None or o is None:
                    problems.append(f"{role}/{task_id}: only in {'ours' if s is None else 'sosw'}'s table")
                    continue
                for key, value in s.items():
                    rule = expected.pop((role, task_id, key), None)
                    if rule is not None:
                        if rule.check(value, o.get(key)):
                            self.differences.append(f"{role}/{task_id}.{key}: {rule.why}")
                        else:
                            problems.append(
                                f"{role}/{task_id}.{key}: expected ({rule.why}); sosw {value!r}, ours {o.get(key)!r}"
                            )
                    elif key not in o:
                        problems.append(f"{role}/{task_id}.{key}: missing in ours (sosw {value!r})")
                    else:
                        problems += [f"{role}/{task_id}{m}" for m in mismatches(value, o[key], f".{key}")]
        problems += [f"declared difference never met: {key} ({rule.why})" for key, rule in expected.items()]
        assert not problems, "\n".join(problems)


def run_both(
    sosw_config: Mapping[str, Any],
    ours_config: Mapping[str, Any],
    calls: list[Call],
    *,
    seed_rows: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    lambda_timeout: int = 60,
    int_labourer_keys: bool = False,
) -> Outcome:
    for config in (sosw_config, ours_config):
        seed(config, seed_rows or {})
    sosw_records = run_sosw(sosw_config, calls, lambda_timeout=lambda_timeout, int_labourer_keys=int_labourer_keys)
    ours_records = OursSide(ours_config, lambda_timeout, int_labourer_keys).run(calls)
    assert len(sosw_records) == len(ours_records) == len(calls), sosw_records
    # Ids each side generated (create_task without a chosen id): ours are renamed to sosw's, pair by pair.
    id_map = {
        o["result"]["task_id"]: s["result"]["task_id"]
        for call, s, o in zip(calls, sosw_records, ours_records, strict=True)
        if call.method == "create_task" and isinstance(s.get("result"), dict) and isinstance(o.get("result"), dict)
    }
    ours_rows = {
        role: {id_map.get(task_id, task_id): renamed(row, id_map) for task_id, row in items.items()}
        for role, items in rows(ours_config).items()
    }
    return Outcome(calls, sosw_records, renamed(ours_records, id_map), rows(sosw_config), ours_rows)


def renamed(value: Any, id_map: Mapping[str, str]) -> Any:
    """``value`` with every task id of ``id_map`` replaced (ours generated them; sosw generated others)."""
    if isinstance(value, str):
        return id_map.get(value, value)
    if isinstance(value, dict):
        return {k: renamed(v, id_map) for k, v in value.items()}
    if isinstance(value, list):
        return [renamed(v, id_map) for v in value]
    return value
