"""What the reliability scenarios share: simulated workers behind a real HTTP Invoke endpoint, fault
hooks inside botocore's own retry loop, orchestrator/scavenger processes, and the invariant check.

The workers are simulated (they report through the real TaskManager report path after a short
delay) so that thousands of tasks fit in CI; everything else is the production code.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from sosw.dynamo import deserialize_item
from sosw.managers.task import TaskManager
from sosw.schema import table_schemas
from sosw.tasks.slots import running_from_items
from tests.reliability.workers import SimulatedWorkers, fate

__all__ = ["DynamoFaults", "SimulatedWorkers", "StaleIndexReads", "check", "fate", "loop_process", "scaled", "scan"]

SCALE = os.environ.get("SOSW_SCALE", "ci")


def scaled(ci: int, full: int) -> int:
    return full if SCALE == "full" else ci


def scan(config: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    client = boto3.client("dynamodb")
    result = {}
    for role, schema in table_schemas(config).items():
        items: list[dict[str, Any]] = []
        for page in client.get_paginator("scan").paginate(TableName=schema.name, ConsistentRead=True):
            items.extend(deserialize_item(i) for i in page["Items"])
        result[role] = items
    return result


@dataclass
class Figures:
    tasks: int
    closed: int
    lost: int
    duplicated: int
    stuck: int
    double_invoked: int
    dead: int
    dead_with_wrong_attempts: int
    peak_over_cap: int
    counters_off: int = 0  # labourers whose slot counter is not the number of tasks holding a slot

    def line(self, scenario: str, extra: str = "") -> str:
        return (
            f"{scenario}: tasks={self.tasks} closed={self.closed} lost={self.lost} duplicated={self.duplicated} "
            f"stuck={self.stuck} double_invoked={self.double_invoked} dead={self.dead} "
            f"dead_wrong_attempts={self.dead_with_wrong_attempts} over_cap={self.peak_over_cap} "
            f"counters_off={self.counters_off} {extra}"
        )

    def assert_clean(self) -> None:
        assert (self.lost, self.duplicated, self.stuck, self.double_invoked) == (0, 0, 0, 0), self
        assert self.dead_with_wrong_attempts == 0 and self.peak_over_cap == 0, self
        assert self.counters_off == 0, self


def check(
    config: dict[str, Any], ids: list[str], invocations: list[tuple[str, str, int]], peaks: Counter[str] | None = None
) -> Figures:
    """The invariants: every task in exactly one table and closed once; no attempt delivered twice;
    dead tasks at max_attempts; the cap never exceeded."""
    tables = scan(config)
    where: dict[str, list[str]] = defaultdict(list)
    for role in ("tasks", "retry", "closed"):
        for item in tables[role]:
            where[item["task_id"]].append(role)
    closed = [t for t in tables["closed"] if t["task_id"] in set(ids)]
    lost = sum(1 for task_id in ids if not where.get(task_id))
    duplicated = sum(1 for task_id in ids if len(where.get(task_id, [])) > 1)
    stuck = sum(1 for task_id in ids if where.get(task_id) and "closed" not in where[task_id])
    attempts = Counter((task_id, attempt) for _, task_id, attempt in invocations)
    labourers = TaskManager(config).get_labourers()
    max_attempts = {lab.id: lab.max_attempts for lab in labourers}
    dead = [t for t in closed if t["labourer_id_task_status"].endswith("_0")]
    wrong = sum(
        1
        for t in dead
        if t["attempts"] != max_attempts[t["labourer_id"]]
        and (t.get("last_error") or {}).get("type") != "Planned-never-retry"
    )
    caps = {lab.id: lab.max_simultaneous_invocations for lab in labourers}
    over = sum(1 for lab, peak in (peaks or {}).items() if peak > caps.get(lab, peak))
    # The slot counters end equal to the tasks that hold a slot (invoked, not reported), read from the table
    now = time.time()
    holding = Counter(
        t["labourer_id"]
        for t in tables["tasks"]
        if t.get("greenfield", 0) > now and "completed_at" not in t and "failed_at" not in t
    )
    counters = running_from_items(tables["leases"])
    counters_off = sum(1 for lab in caps if counters.get(lab, 0) != holding[lab])
    return Figures(
        len(ids),
        len(closed),
        lost,
        duplicated,
        stuck,
        sum(1 for n in attempts.values() if n > 1),
        len(dead),
        wrong,
        over,
        counters_off,
    )


# ------------------------------------------------------------------ processes


def loop_process(
    kind: str, config: dict[str, Any], env: dict[str, str], seconds: float, crash_at_call: int | None = None
) -> None:
    """Body of an orchestrator or scavenger process: run until ``seconds`` pass (or crash at a call)."""
    os.environ.update(env)
    from sosw.orchestrator import Orchestrator
    from sosw.scavenger import Scavenger

    deadline = time.monotonic() + seconds
    calls = [0]
    while time.monotonic() < deadline:
        tm = TaskManager(config)
        if crash_at_call is not None:

            def maybe_crash(**_: Any) -> None:
                calls[0] += 1
                if calls[0] == crash_at_call:
                    os.kill(os.getpid(), signal.SIGKILL)

            tm.dynamo_db_client.meta.events.register("before-send.dynamodb", maybe_crash)
        if kind == "orchestrator":
            # A run that follows the work (continuous dispatch) until the process's time is up
            safety = float(tm.config.get("orchestrator_safety_seconds", 5))

            def remaining(safety: float = safety) -> float:
                return safety + deadline - time.monotonic()

            Orchestrator(tm).run(remaining, follow=True)
        else:
            Scavenger(tm).run()
        time.sleep(0.05)


# ------------------------------------------------------------------ faults inside botocore


def _response(status: int, body: dict[str, Any]) -> AWSResponse:
    class Raw:
        def __init__(self, data: bytes) -> None:
            self._data = data

        def stream(self, **_: Any) -> Any:
            yield self._data

    data = json.dumps(body).encode()
    return AWSResponse("http://faults", status, {"x-amzn-RequestId": "fault"}, Raw(data))


@dataclass
class DynamoFaults:
    """A ``before-send`` hook: answers a share of DynamoDB requests with a fault instead of sending them.

    It runs inside botocore's retry loop, so the standard retries see the fault as AWS would send it.
    """

    rate: float
    seed: int = 5
    injected: Counter[str] = field(default_factory=Counter)
    max_attempts_seen: int = 0  # the most attempts botocore made at one call (needs-retry gets the attempt number)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()

    def install(self, client: Any) -> None:
        client.meta.events.register("before-send.dynamodb", self)
        client.meta.events.register("needs-retry.dynamodb", self._count_retry)

    def _count_retry(self, attempts: int = 0, **_: Any) -> None:
        with self._lock:
            self.max_attempts_seen = max(self.max_attempts_seen, attempts)

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        target = request.headers.get("X-Amz-Target", b"")
        operation = (target.decode() if isinstance(target, bytes) else target).rsplit(".", 1)[-1]
        with self._lock:
            if self._rng.random() >= self.rate:
                return None
            pick = self._rng.random()
        if operation == "BatchWriteItem" and pick < 0.5:
            body = json.loads(request.body)
            self.injected["UnprocessedItems"] += 1
            return _response(200, {"UnprocessedItems": body["RequestItems"]})  # nothing written
        if operation == "TransactWriteItems" and pick < 0.5:
            n = len(json.loads(request.body)["TransactItems"])
            self.injected["TransactionConflict"] += 1
            return _response(
                400,
                {
                    "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                    "message": "Transaction cancelled",
                    "CancellationReasons": [{"Code": "TransactionConflict"}] * n,
                },
            )
        kind = ("ProvisionedThroughputExceededException", "ThrottlingException", "InternalServerError")[
            int(pick * 3) % 3
        ]
        self.injected[kind] += 1
        status = 500 if kind == "InternalServerError" else 400
        return _response(status, {"__type": f"com.amazonaws.dynamodb.v20120810#{kind}", "message": "injected"})


@dataclass
class StaleIndexReads:
    """Replays an earlier Query response of the greenfield index: GSIs are eventually consistent in AWS."""

    index: str
    rate: float = 0.5
    replayed: int = 0

    def __post_init__(self) -> None:
        self._previous: dict[str, bytes] = {}
        self._rng = random.Random(3)
        self._local = threading.local()

    def install(self, client: Any) -> None:
        client.meta.events.register("before-send.dynamodb.Query", self.before)
        client.meta.events.register("after-call.dynamodb.Query", self.after)

    def _key(self, params: dict[str, Any]) -> str | None:
        # Every read of the index, the running count (Select=COUNT) included, may come back stale.
        if params.get("IndexName") != self.index:
            return None
        fields = ("KeyConditionExpression", "FilterExpression", "ScanIndexForward", "Limit", "Select")
        return json.dumps({k: params.get(k) for k in fields}, sort_keys=True) + json.dumps(
            params.get("ExpressionAttributeValues"), sort_keys=True, default=str
        )

    def before(self, request: Any, **_: Any) -> AWSResponse | None:
        key = self._key(json.loads(request.body))
        self._local.key = key
        if key in self._previous and self._rng.random() < self.rate:
            self.replayed += 1
            self._local.key = None  # a replay is not a fresh response
            return AWSResponse("http://stale", 200, {}, _raw(self._previous[key]))
        return None

    def after(self, http_response: Any, **_: Any) -> None:
        key = getattr(self._local, "key", None)
        if key and http_response.status_code == 200:
            self._previous[key] = http_response.content


def _raw(data: bytes) -> Any:
    class Raw:
        def stream(self, **_: Any) -> Any:
            yield data

    return Raw()


def wait_until(condition: Callable[[], bool], seconds: float, pause: float = 0.2) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(pause)
    return condition()
