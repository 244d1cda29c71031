"""What both runners share: the DynamoDB meter, the workload drivers, the end-state checks.

Stdlib and boto3 only: the sosw runner imports this module from sosw 0.7.51's virtualenv, where our
package (also named ``sosw``) is not installed. Each stack is driven through the same small adapter
(:class:`Stack`), so both run exactly the same workload, loop and checks.
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import boto3

#: Operations that accept ReturnConsumedCapacity.
CAPACITY_OPS = frozenset(
    {
        "GetItem",
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "Query",
        "Scan",
        "BatchGetItem",
        "BatchWriteItem",
        "TransactGetItems",
        "TransactWriteItems",
    }
)
READ_OPS = frozenset({"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems"})

#: Workers report back this many at a time (both stacks): in production each worker Lambda reports on its own.
REPORTERS = 16
#: ... from this many processes (REPORTERS / REPORT_PROCESSES threads each): workers are separate Lambdas, so
#: one process's GIL must not be what limits how fast they report (it was: about 1.5 ms of CPU per report).
REPORT_PROCESSES = 4


def say(message: str) -> None:
    print(message, flush=True)


@contextlib.contextmanager
def checked_out(ref: str) -> Iterator[Path]:
    """The ``shared/`` folder of commit ``ref``, from a temporary git worktree (removed after): a design to compare."""
    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory(prefix="sosw-bench-baseline-") as scratch:
        tree = Path(scratch) / "tree"
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", "--quiet", str(tree), ref], check=True)
        try:
            yield tree / "shared"
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)], check=False)


def write_results(name: str, results: dict[str, Any], markdown: str) -> None:
    """``bench/<name>_results.json`` and ``.md``, and the table printed."""
    bench = Path(__file__).resolve().parent
    (bench / f"{name}_results.json").write_text(json.dumps(results, indent=1) + "\n")
    (bench / f"{name}_results.md").write_text(markdown)
    say(markdown)


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 1]); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


# ---------------------------------------------------------------------------------------------- the meter


class DynamoMeter:
    """Counts every DynamoDB HTTP request by operation, and the capacity each one consumed.

    Installed on an event system (a boto3 Session's, before its clients are created: a client copies the
    session's handlers), it asks every request for ``ReturnConsumedCapacity=TOTAL`` and sums the answers.
    DynamoDB Local reports a transactional write at 4x a plain write of the same items (AWS bills 2x), so
    ``wcu_aws`` halves what it reports for TransactWriteItems (valid for transactions with one action per
    table, which is what both stacks send); ``wcu`` is DynamoDB Local's own figure.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # HTTP requests sent (botocore retries included)
        self.errors: Counter[str] = Counter()
        self.rcu = 0.0
        self.wcu = 0.0
        self.wcu_aws = 0.0
        self.lambda_requests: Counter[str] = Counter()  # not DynamoDB: counted apart, to explain a phase's time
        self.lambda_errors: Counter[str] = Counter()
        self.cpu_elsewhere = 0.0  # CPU seconds of the reporter processes, which run the stack's code too

    def install(self, events: Any) -> None:
        events.register("before-parameter-build.dynamodb", self._ask_capacity)
        events.register("before-send.dynamodb", self._sent)
        events.register("after-call.dynamodb", self._answered)
        events.register("after-call-error.dynamodb", self._failed)
        events.register("before-send.lambda", self._lambda_sent)
        events.register("after-call.lambda", self._lambda_answered)
        events.register("after-call-error.lambda", self._lambda_failed)

    def install_on_default_session(self) -> None:
        """Meter every client that ``boto3.client(...)`` creates from now on (both stacks create theirs so)."""
        boto3.setup_default_session()
        self.install(boto3.DEFAULT_SESSION.events)

    @staticmethod
    def _ask_capacity(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name in CAPACITY_OPS:
            params.setdefault("ReturnConsumedCapacity", "TOTAL")

    def _sent(self, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        with self._lock:
            self.requests[operation] += 1
        # returning None: botocore sends the request

    def _answered(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        consumed = parsed.get("ConsumedCapacity")
        entries = consumed if isinstance(consumed, list) else [consumed] if consumed else []
        code = parsed.get("Error", {}).get("Code") if isinstance(parsed.get("Error"), dict) else None
        with self._lock:
            if code:
                self.errors[f"{model.name}:{code}"] += 1
            for entry in entries:
                units = float(entry.get("CapacityUnits", 0.0))
                if model.name in READ_OPS:
                    self.rcu += float(entry.get("ReadCapacityUnits", units))
                else:
                    write = float(entry.get("WriteCapacityUnits", units))
                    self.wcu += write
                    self.wcu_aws += write / 2 if model.name == "TransactWriteItems" else write

    def _failed(self, exception: Exception, event_name: str, **_: Any) -> None:
        """A request that got no answer (connection reset, timeout): botocore raised before after-call."""
        with self._lock:
            self.errors[f"{event_name.rsplit('.', 1)[-1]}:{type(exception).__name__}"] += 1

    def _lambda_sent(self, event_name: str, **_: Any) -> None:
        with self._lock:
            self.lambda_requests[event_name.rsplit(".", 1)[-1]] += 1

    def _lambda_answered(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        error = parsed.get("Error")
        if isinstance(error, dict) and error.get("Code"):
            with self._lock:
                self.lambda_errors[f"{model.name}:{error['Code']}"] += 1

    def _lambda_failed(self, exception: Exception, event_name: str, **_: Any) -> None:
        with self._lock:
            self.lambda_errors[f"{event_name.rsplit('.', 1)[-1]}:{type(exception).__name__}"] += 1

    def merge(self, delta: dict[str, Any], cpu_seconds: float) -> None:
        """Add what a reporter process metered (a :func:`_diff` of its own meter) and the CPU it used."""
        with self._lock:
            for key, counter in (
                ("by_operation", self.requests),
                ("errors", self.errors),
                ("lambda_requests", self.lambda_requests),
                ("lambda_errors", self.lambda_errors),
            ):
                counter.update(delta[key])
            self.rcu += delta["rcu"]
            self.wcu += delta["wcu"]
            self.wcu_aws += delta["wcu_aws"]
            self.cpu_elsewhere += cpu_seconds

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "by_operation": dict(self.requests),
                "errors": dict(self.errors),
                "lambda_requests": dict(self.lambda_requests),
                "lambda_errors": dict(self.lambda_errors),
                "rcu": self.rcu,
                "wcu": self.wcu,
                "wcu_aws": self.wcu_aws,
            }


def _diff(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    def counts(key: str) -> dict[str, int]:
        delta = {k: after[key].get(k, 0) - before[key].get(k, 0) for k in after[key]}
        return {k: v for k, v in delta.items() if v}

    return {
        "by_operation": counts("by_operation"),
        "errors": counts("errors"),
        "lambda_requests": counts("lambda_requests"),
        "lambda_errors": counts("lambda_errors"),
        "rcu": after["rcu"] - before["rcu"],
        "wcu": after["wcu"] - before["wcu"],
        "wcu_aws": after["wcu_aws"] - before["wcu_aws"],
    }


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far (Linux /proc); None elsewhere."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def machine_cpu_seconds() -> float | None:
    """CPU time all processes of this machine have used so far (Linux /proc/stat): shows other sessions' load."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = fields
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class Phases:
    """Time, CPU and meter per named phase; a phase may be entered many times (a loop of runs): it accumulates.

    Only the stack's own calls are timed and metered: the harness's checks happen between them. CPU is the
    stack's process (all its threads), DynamoDB Local's, the Lambda endpoint's and the whole machine's, so
    that a phase bound by this machine's cores shows where they went (other sessions' load included).
    """

    def __init__(self, meter: DynamoMeter, spec: dict[str, Any]) -> None:
        self.meter = meter
        self.pids: dict[str, int] = spec.get("cpu_pids", {})
        self.results: dict[str, dict[str, Any]] = {}

    def _cpu(self) -> dict[str, float | None]:
        return {
            "stack": time.process_time() + self.meter.cpu_elsewhere,
            **{name: cpu_seconds(pid) for name, pid in self.pids.items()},
            "machine": machine_cpu_seconds(),
        }

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        before, cpu_before = self.meter.snapshot(), self._cpu()
        started = time.perf_counter()
        try:
            return fn()
        finally:
            elapsed = time.perf_counter() - started
            delta = _diff(self.meter.snapshot(), before)
            cpu_after = self._cpu()
            phase = self.results.setdefault(
                name,
                {
                    "seconds": 0.0,
                    "calls": 0,
                    "requests": 0,
                    "by_operation": {},
                    "errors": {},
                    "lambda_requests": {},
                    "lambda_errors": {},
                    "rcu": 0.0,
                    "wcu": 0.0,
                    "wcu_aws": 0.0,
                    "cpu_seconds": {},
                },
            )
            phase["seconds"] += elapsed
            phase["calls"] += 1
            for key, value in cpu_after.items():
                if value is not None and cpu_before.get(key) is not None:
                    phase["cpu_seconds"][key] = phase["cpu_seconds"].get(key, 0.0) + value - cpu_before[key]
            for key in ("rcu", "wcu", "wcu_aws"):
                phase[key] += delta[key]
            for key in ("by_operation", "errors", "lambda_requests", "lambda_errors"):
                for k, v in delta[key].items():
                    phase[key][k] = phase[key].get(k, 0) + v
            phase["requests"] = sum(phase["by_operation"].values())


# ---------------------------------------------------------------------------------------------- helpers


def plain_client() -> Any:
    """A DynamoDB client of a fresh session: never metered (the harness's own reads and bulk loads)."""
    return boto3.session.Session().client("dynamodb", region_name="us-east-1")


def query_count(client: Any, **kwargs: Any) -> int:
    total = 0
    for page in client.get_paginator("query").paginate(Select="COUNT", **kwargs):
        total += page["Count"]
    return total


def scan_count(client: Any, table: str) -> int:
    total = 0
    for page in client.get_paginator("scan").paginate(TableName=table, Select="COUNT", ConsistentRead=True):
        total += page["Count"]
    return total


class Tables:
    """The run's table names (sosw's names with the run's prefix) and the harness's uncounted reads."""

    def __init__(self, names: dict[str, str]) -> None:
        self.tasks = names["tasks"]
        self.index = names["index"]
        self.retry = names["retry"]
        self.closed = names["closed"]
        self.closed_index = names["closed_index"]
        self.client = plain_client()

    def open_count(self, labourer_id: str) -> int:
        return query_count(
            self.client,
            TableName=self.tasks,
            IndexName=self.index,
            KeyConditionExpression="labourer_id = :l",
            ExpressionAttributeValues={":l": {"S": labourer_id}},
        )

    def waiting_count(self, labourer_id: str) -> int:
        return query_count(
            self.client,
            TableName=self.retry,
            KeyConditionExpression="labourer_id = :l",
            ExpressionAttributeValues={":l": {"S": labourer_id}},
            ConsistentRead=True,
        )

    def closed_count(self, labourer_id: str, completed: bool) -> int:
        return query_count(
            self.client,
            TableName=self.closed,
            IndexName=self.closed_index,
            KeyConditionExpression="labourer_id_task_status = :s",
            ExpressionAttributeValues={":s": {"S": f"{labourer_id}_{1 if completed else 0}"}},
        )

    def state(self, labourer_id: str) -> tuple[int, int, int, int]:
        return (
            self.open_count(labourer_id),
            self.waiting_count(labourer_id),
            self.closed_count(labourer_id, True),
            self.closed_count(labourer_id, False),
        )

    def bulk_queue(self, labourer_id: str, first: int, count: int, threads: int = 4) -> float:
        """Queue ``count`` tasks (as TaskManager.create_tasks writes them) after task number ``first``: fast, unmetered.

        Greenfields continue the queue: task k has greenfield 1000 * (k + 1).
        """
        now = round(time.time(), 3)
        items = [
            {
                "task_id": {"S": uuid.uuid4().hex},
                "labourer_id": {"S": labourer_id},
                "created_at": {"N": str(now)},
                "attempts": {"N": "0"},
                "payload": {"S": json.dumps({"i": k})},
                "greenfield": {"N": str(1000 * (k + 1))},
            }
            for k in range(first, first + count)
        ]
        chunks = [items[i : i + 25] for i in range(0, len(items), 25)]
        lock = threading.Lock()
        table = self.tasks

        def writer() -> None:
            client = plain_client()
            while True:
                with lock:
                    if not chunks:
                        return
                    chunk = chunks.pop()
                pending: dict[str, Any] = {table: [{"PutRequest": {"Item": item}} for item in chunk]}
                while pending:
                    pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            for future in [pool.submit(writer) for _ in range(threads)]:
                future.result()
        return time.perf_counter() - started


class Endpoint:
    """The loopback Lambda endpoint's control API (bench.invoke_endpoint)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    def register(self, function: str, delay_ms: float, timeout: int = 900) -> None:
        self._call("PUT", f"/_bench/functions/{function}", {"delay_ms": delay_ms, "timeout": timeout})

    def invocations(self, function: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/_bench/functions/{function}")["invocations"]

    def count(self, function: str) -> int:
        return self._call("GET", f"/_bench/functions/{function}?count=1")["count"]


# ---------------------------------------------------------------------------------------------- the workloads


class Stack(Protocol):
    """One orchestrator stack as the workloads drive it."""

    name: str

    def create(self, n: int) -> None: ...
    def orchestrate_once(self) -> None: ...
    def worker_reports(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """What the stack's own Worker class sends its WorkerAssistant for this invocation (not applied)."""
        ...

    def report(self, report: dict[str, Any]) -> str:
        """Apply one report through the stack's WorkerAssistant; returns its outcome."""
        ...

    def scavenge_once(self) -> None: ...


GUARD = "start_task"  # the duplicate-delivery guard's action (ours): a worker asks before working


class WorkloadFailed(Exception):
    pass


def _report_in_threads(stack_fn: Callable[[dict[str, Any]], str], reports: Iterable[dict[str, Any]]) -> Counter[str]:
    """A few reports at a time (the scaling workload's ten per cycle), in this process."""
    with ThreadPoolExecutor(REPORTERS, thread_name_prefix="worker") as pool:
        return Counter(pool.map(stack_fn, reports))


class Reporters:
    """Processes that apply workers' reports through the stack's WorkerAssistant, as separate worker Lambdas would.

    Forked once per run (before any phase is timed); each builds its own stack (its own clients) and meters
    what it sends with its copy of the meter, which it hands back with its CPU time: the phase counts both.
    """

    _child: dict[str, Any] = {}

    def __init__(self, make_stack: Callable[[dict[str, Any]], Stack], spec: dict[str, Any], meter: DynamoMeter) -> None:
        self.meter = meter
        context = multiprocessing.get_context("fork")  # the children inherit the imported stack, no re-import
        ready = context.Barrier(REPORT_PROCESSES + 1)
        self.pool = context.Pool(
            REPORT_PROCESSES, initializer=Reporters._start, initargs=(make_stack, spec, meter, ready)
        )
        ready.wait(timeout=120)  # every child has built its stack before any phase is timed

    @staticmethod
    def _start(
        make_stack: Callable[[dict[str, Any]], Stack], spec: dict[str, Any], meter: DynamoMeter, ready: Any
    ) -> None:
        Reporters._child.update(stack=make_stack(spec), meter=meter)
        ready.wait(timeout=120)

    @staticmethod
    def _apply(batch: list[dict[str, Any]]) -> tuple[Counter[str], dict[str, Any], float]:
        stack, meter = Reporters._child["stack"], Reporters._child["meter"]
        before, cpu = meter.snapshot(), time.process_time()
        with ThreadPoolExecutor(max(1, REPORTERS // REPORT_PROCESSES), thread_name_prefix="worker") as pool:
            outcomes = Counter(pool.map(stack.report, batch))
        return outcomes, _diff(meter.snapshot(), before), time.process_time() - cpu

    def report_all(self, reports: list[dict[str, Any]]) -> Counter[str]:
        chunks = [reports[i :: REPORT_PROCESSES * 4] for i in range(REPORT_PROCESSES * 4)]
        outcomes: Counter[str] = Counter()
        for counted, delta, cpu in self.pool.imap_unordered(Reporters._apply, [c for c in chunks if c]):
            outcomes.update(counted)
            self.meter.merge(delta, cpu)
        return outcomes

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


def lifecycle(stack: Stack, spec: dict[str, Any], meter: DynamoMeter, reporters: Reporters) -> dict[str, Any]:
    """(a) create N, (b) orchestrate until all are invoked, (c) every worker reports completed, (d) scavenge."""
    n, labourer_id = spec["n"], spec["labourer_id"]
    tables, endpoint = Tables(spec["tables"]), Endpoint(spec["lambda_url"])
    phases = Phases(meter, spec)
    label = f"{stack.name} lifecycle N={n} delay={spec['delay_ms']}ms"
    notes: list[str] = []

    phases.run("create", lambda: stack.create(n))
    p = phases.results["create"]
    say(
        f"  {label}: (a) created {n} in {p['seconds']:.2f} s ({n / p['seconds']:.0f} tasks/s), {p['requests']} requests"
    )

    runs = 0
    while endpoint.count(labourer_id) < n:
        if runs >= spec.get("max_runs", 50):
            raise WorkloadFailed(f"orchestrator: {endpoint.count(labourer_id)} of {n} invoked after {runs} runs")
        phases.run("orchestrate", stack.orchestrate_once)
        runs += 1
    p = phases.results["orchestrate"]
    say(
        f"  {label}: (b) invoked {n} in {p['seconds']:.2f} s ({n / p['seconds']:.0f} invocations/s, {runs} run(s)), "
        f"{p['requests']} requests"
    )

    # The workers' reports, built by each stack's own Worker class (not timed), then applied through its
    # WorkerAssistant, 16 at a time from 4 processes: the guard first (ours), then the completions.
    reports = [r for event in endpoint.invocations(labourer_id) for r in stack.worker_reports(event)]
    guard = [r for r in reports if r.get("action") == GUARD]
    completions = [r for r in reports if r.get("action") != GUARD]
    if guard:
        outcomes = phases.run("guard", lambda: reporters.report_all(guard))
        if outcomes != Counter({"accepted": len(guard)}):
            notes.append(f"start_task outcomes {dict(outcomes)}")
        p = phases.results["guard"]
        say(f"  {label}: (c0) duplicate-delivery guard for {n} in {p['seconds']:.2f} s, {p['requests']} requests")
    outcomes = phases.run("complete", lambda: reporters.report_all(completions))
    if len(completions) != n or set(outcomes) - {"accepted", "ok"}:
        notes.append(f"{len(completions)} completion reports, outcomes {dict(outcomes)}")
    p = phases.results["complete"]
    left = tables.open_count(labourer_id)
    say(
        f"  {label}: (c) {n} reported completed in {p['seconds']:.2f} s, {p['requests']} requests; "
        f"{n - left} already closed"
    )

    runs = 0
    while runs == 0 or tables.open_count(labourer_id) > 0:  # at least the scheduled run
        if runs >= spec.get("max_runs", 50):
            raise WorkloadFailed(f"scavenger: {tables.open_count(labourer_id)} tasks still open after {runs} runs")
        phases.run("scavenge", stack.scavenge_once)
        runs += 1
    p = phases.results["scavenge"]
    say(
        f"  {label}: (d) {left} left to archive: done in {p['seconds']:.2f} s ({runs} run(s)), {p['requests']} requests"
    )
    return {"phases": phases.results, "notes": notes, "left_after_reports": left}


def retry_workload(stack: Stack, spec: dict[str, Any], meter: DynamoMeter) -> dict[str, Any]:
    """N tasks whose workers never report: orchestrator and scavenger runs until all are closed dead.

    Both run once per loop; a loop that changed nothing (no invocation, no move) waits ``tick`` seconds, as
    a schedule would. Time is real: duration, cooldown and max_duration are a second or two.
    """
    n, labourer_id = spec["n"], spec["labourer_id"]
    tables, endpoint = Tables(spec["tables"]), Endpoint(spec["lambda_url"])
    phases = Phases(meter, spec)
    label = f"{stack.name} retry N={n}"
    phases.run("create", lambda: stack.create(n))
    loops = idle = 0
    started = time.monotonic()
    state = (tables.state(labourer_id), endpoint.count(labourer_id))
    while tables.closed_count(labourer_id, False) < n:
        if time.monotonic() - started > spec.get("timeout", 300):
            raise WorkloadFailed(f"retry: not all dead after {spec.get('timeout', 300)} s: {tables.state(labourer_id)}")
        phases.run("orchestrate", stack.orchestrate_once)
        phases.run("scavenge", stack.scavenge_once)
        loops += 1
        new_state = (tables.state(labourer_id), endpoint.count(labourer_id))
        if new_state == state:
            idle += 1
            time.sleep(spec.get("tick", 1.0))
        else:
            open_, waiting, _completed, dead = new_state[0]
            say(f"  {label}: loop {loops}: open {open_}, waiting {waiting}, dead {dead}, invocations {new_state[1]}")
        state = new_state
    total = sum(p["requests"] for p in phases.results.values())
    say(f"  {label}: all {n} dead after {loops} loops ({idle} idle), {total} requests ({total / n:.1f} per task)")
    return {"phases": phases.results, "loops": loops, "idle_loops": idle, "wall_seconds": time.monotonic() - started}


def scaling(stack: Stack, spec: dict[str, Any], meter: DynamoMeter) -> dict[str, Any]:
    """One Orchestrator run and one Scavenger run with 1k, 10k, 100k tasks queued (the queue grows between levels).

    The labourer's limit is ``limit``: each Orchestrator run invokes that many; their workers report completed
    (not counted), and the Scavenger run archives them. The queue is loaded unmetered, in bulk. A first cycle,
    not recorded, makes the closed table's history the same at every level: only the queue grows.
    """
    labourer_id, limit = spec["labourer_id"], spec["limit"]
    tables, endpoint = Tables(spec["tables"]), Endpoint(spec["lambda_url"])
    loaded = queued = archived = 0
    steps = []

    def cycle(phases: Phases) -> list[str]:
        nonlocal queued, archived
        seen = endpoint.count(labourer_id)
        phases.run("orchestrate", stack.orchestrate_once)
        new = endpoint.invocations(labourer_id)[seen:]
        reports = [r for event in new for r in stack.worker_reports(event)]
        for step in (GUARD, None):  # the guard first, then the completions
            batch = [r for r in reports if (r.get("action") == GUARD) == (step == GUARD)]
            phases.run("complete", lambda batch=batch: _report_in_threads(stack.report, batch))
        phases.run("scavenge", stack.scavenge_once)
        queued -= len(new)
        archived += len(new)
        problems = [] if len(new) == limit else [f"{len(new)} invoked, expected {limit}"]
        state = tables.state(labourer_id)
        if state != (queued, 0, archived, 0):
            problems.append(f"state (open, waiting, completed, dead) {state}, expected {(queued, 0, archived, 0)}")
        return problems

    for number, level in enumerate(spec["levels"]):
        seconds = tables.bulk_queue(labourer_id, loaded, level - queued + (limit if number == 0 else 0))
        loaded += level - queued + (limit if number == 0 else 0)
        queued = level + (limit if number == 0 else 0)
        if number == 0:
            primer = cycle(Phases(meter, spec))
            if primer:
                raise WorkloadFailed(f"scaling: the first cycle: {primer}")
        phases = Phases(meter, spec)
        problems = cycle(phases)
        o, s = phases.results["orchestrate"], phases.results["scavenge"]
        say(
            f"  {stack.name} scaling {level} queued (loaded in {seconds:.1f} s): orchestrator run {o['requests']} "
            f"requests, {o['rcu']:.1f} RCU, {o['seconds'] * 1000:.0f} ms; scavenger run {s['requests']} requests, "
            f"{s['rcu']:.1f} RCU, {s['seconds'] * 1000:.0f} ms" + (f"; PROBLEMS: {problems}" if problems else "")
        )
        steps.append({"queued": level, "phases": phases.results, "problems": problems})
    return {"steps": steps}


WORKLOADS = {"retry": retry_workload, "scaling": scaling}  # lifecycle: with reporter processes (runner_main)


def runner_main(make_stack: Callable[[dict[str, Any]], Stack], meter: DynamoMeter) -> None:
    """``python -m bench.<stack>_runner SPEC.json RESULT.json``: run one workload, write its result."""
    spec_path, result_path = sys.argv[1], sys.argv[2]
    with open(spec_path) as f:
        spec = json.load(f)
    result: dict[str, Any] = {"ok": True}
    try:
        stack = make_stack(spec)
        if spec["workload"] == "lifecycle":
            reporters = Reporters(make_stack, spec, meter)
            try:
                result.update(lifecycle(stack, spec, meter, reporters))
            finally:
                reporters.close()
        else:
            result.update(WORKLOADS[spec["workload"]](stack, spec, meter))
    except Exception as exc:  # reported as a failed run, not as fast
        import traceback

        traceback.print_exc()
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    with open(result_path, "w") as f:
        json.dump(result, f)
