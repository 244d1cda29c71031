"""What the reliability scenarios share: simulated workers behind a real HTTP Invoke endpoint, fault
hooks inside botocore's own retry loop, orchestrator/scavenger processes, and the invariant check.

The workers are simulated (they report through the real TaskManager report path after a short
delay) so that thousands of tasks fit in CI; everything else is the production code.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from sosw.dynamo import deserialize_item
from sosw.managers.task import TaskManager
from sosw.schema import table_schemas
from sosw.tasks.slots import running_from_items

SCALE = os.environ.get("SOSW_SCALE", "ci")
_INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations")


def scaled(ci: int, full: int) -> int:
    return full if SCALE == "full" else ci


def fate(task_id: str, first_fail: float, always_fail: float) -> str:
    """A task's planned behaviour, from its id (the same in every process): complete, fail_once, always_fail."""
    x = int(hashlib.sha256(task_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if x < always_fail:
        return "always_fail"
    if x < always_fail + first_fail:
        return "fail_once"
    return "complete"


@dataclass
class SimulatedWorkers:
    """A Lambda Invoke endpoint on loopback whose "workers" report back through the TaskManager.

    Records every delivered (labourer, task_id, attempt); tracks the peak of in-flight work per labourer.
    ``refuse`` (a probability) answers 429 to that share of Invokes, delivering nothing. ``work`` replaces
    the planned report (the hot-labourer benchmark runs the project's own Worker class there); ``threads``
    is how many deliveries run at once; ``invoke_seconds`` is Lambda's latency before it accepts an Invoke.
    """

    config: dict[str, Any]
    first_fail: float = 0.1
    always_fail: float = 0.02
    work_seconds: float = 0.05
    refuse: float = 0.0
    silent: bool = False  # never report (the retry workload)
    work: Callable[[str, dict[str, Any]], None] | None = None
    threads: int = 16
    invoke_seconds: float = 0.0
    invocations: list[tuple[str, str, int]] = field(default_factory=list)
    refused: int = 0
    peaks: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._rng = random.Random(11)
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="worker")
        self._tm = TaskManager(self.config)
        workers = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._reply(200, {"Timeout": 60})

            def do_POST(self) -> None:
                match = _INVOKE.match(self.path)
                event = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                with workers._lock:
                    refuse = workers._rng.random() < workers.refuse
                    if refuse:
                        workers.refused += 1
                    else:
                        labourer = match.group(1) if match else "?"
                        workers.invocations.append((labourer, event["task_id"], event["attempts"]))
                        workers._in_flight[labourer] += 1
                        workers.peaks[labourer] = max(workers.peaks[labourer], workers._in_flight[labourer])
                time.sleep(workers.invoke_seconds)
                if refuse:
                    self._reply(429, {"message": "Rate exceeded"}, {"x-amzn-ErrorType": "TooManyRequestsException"})
                    return
                workers._pool.submit(workers._work, labourer, event)
                self._reply(202, {})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _work(self, labourer: str, event: dict[str, Any]) -> None:
        try:
            if self.work is not None:
                self.work(labourer, event)
                return
            time.sleep(self.work_seconds)
            if self.silent:
                return
            task_id, attempt = event["task_id"], event["attempts"]
            plan = fate(task_id, self.first_fail, self.always_fail)
            if plan == "always_fail" or (plan == "fail_once" and attempt == 1):
                self._tm.mark_task_failed(task_id, attempt=attempt, error_type="Planned", error_message=plan)
            else:
                self._tm.mark_task_completed(task_id, attempt=attempt, result={"ok": True})
        finally:
            with self._lock:
                self._in_flight[labourer] -= 1

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._pool.shutdown(wait=True)


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
