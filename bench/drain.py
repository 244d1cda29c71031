"""The drain workload of issue 13 (``make bench``; ``BENCH_WORKLOADS=drain`` alone): continuous dispatch at real speed.

The whole local stack (``sosw.local.stack.LocalStack``): the real handlers of ``lambdas/`` behind the local Lambda
endpoint, the tasks table's stream polled as Lambda's event source mapping polls it, and DynamoDB Local behind a
counting proxy (``bench.ddb_proxy``), so every process's requests are counted where DynamoDB sees them; each
function's requests carry its role in the User-Agent (``AWS_SDK_UA_APP_ID``, set by this harness on the local
functions only). Time is real. A thread plays the deployed schedules: every 60 s it invokes the Orchestrator and the
Scavenger asynchronously, as EventBridge does. Nothing else drives dispatch: new tasks wake it through the stream,
reports through the WorkerAssistant, failures through the Scavenger.

One stack, one labourer per phase, so that the phases' figures don't mix; every process of every function runs once
before anything is measured (cold starts are not the subject). The schedule's runs name the labourers of
the phase under way (``{"labourers": [...]}``), so a phase pays the scheduled runs of its own labourers, as on a stack
that has only them.

1. latency (labourers ``probe`` and ``late``, schedule every 30 s, shortened so this phase needs one tick):
   - create-to-invoke with free slots: 30 tasks created one at a time, 0.5 s apart;
   - retry-due-to-start: 20 tasks whose first attempt fails (linear policy: due 2 s after the failure), and 10
     delayed tasks (``create_delayed_task``, 3 to 12 s) created while a run follows the labourer; ``probe``'s cap
     (30) leaves each a free slot at its due time, so the figure is dispatch's, not a wait for a slot;
   - 5 delayed tasks (5 s) on ``late``, created while no run follows it: the retry table's stream wakes dispatch.
2. drain: N tasks of d seconds with cap C, for (200, 1 s, 10) and (1,000, 0.5 s, 50): the drain time, against the
   ideal N x d / C and against one fill per minute (sosw's model, computed); latencies; requests per task.
   Then failures: 100 tasks whose one attempt fails after 0.5 s (labourer ``failing``, cap 10, dead at once): how
   long a slot freed by a failure stays empty (against the failing worker's end, which follows its report).
3. burst: 1,000 tasks invoked on a sink worker (it reports nothing); once they ran 11 s (past half of
   ``dispatch_wait_seconds``: such a completion wakes the Orchestrator; a shorter task's never does), their 1,000
   completion reports are queued at the WorkerAssistant at once, built as the Worker base class builds them: how many
   Orchestrator invocations they start.
4. idle: scheduled runs with nothing to do, 4 s apart (shortened; scaled to the deployed one a minute): requests in
   and between runs, and the Orchestrator's Lambda seconds.
5. one-pass: the (200, 1 s, 10) drain again, driven the way sosw and this stack before issue 13 drove it: one pass
   per scheduled run (``{"follow": false}``), no stream, no wake-ups. A run is started as soon as the last fill ended
   (minute ticks compressed in time) and one Scavenger run closes the lifecycle, as in the lifecycle workload.

usage: python -m bench.drain [--dynamodb-url URL] [--out PATH]; BENCH_SCALE shrinks N (quick runs).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from bench.common import machine_cpu_seconds, percentile
from bench.serving import start_server, stop_server
from sosw import aws
from sosw.dynamo import batch_get, deserialize_item
from sosw.local.dynamodb_local import DynamoDBLocal
from sosw.local.stack import ASSISTANT, LocalStack, WorkerSpec, programmatic_stack
from sosw.tasks.model import WORKER_EVENT_FIELDS
from sosw.tasks.slots import SHARDS_MAX, counter_key, running_from_items, shard_key

ROOT = Path(__file__).resolve().parents[1]
SCALE = float(os.environ.get("BENCH_SCALE", "1"))

#: (N tasks, d seconds each, cap C): the drains of issue 13.
DRAINS = [(200, 1.0, 10), (1000, 0.5, 50)]
SCHEDULE_SECONDS = 60.0  # both schedules' deployed rate
LATENCY_SCHEDULE_SECONDS = 30.0
TRICKLE_N, TRICKLE_GAP, TRICKLE_SLEEP = 30, 0.5, 0.2
RETRY_N, RETRY_DUE = 20, 2  # linear retry policy: max_duration (2 s) x attempts (1)
DELAYS = list(range(3, 13))
PROBE_CAP = RETRY_N + len(DELAYS)  # every retry and delayed task of the latency phase finds a free slot when due
LATE_N, LATE_DELAY = 5, 5
#: Slots freed by failures: N tasks whose one attempt fails after D seconds, on a labourer of cap C (dead at once).
FAILING, FAIL_N, FAIL_D, FAIL_CAP = "failing", 100, 0.5, 10
BURST_N = 1000
BURST_LONG_SECONDS = 11.0  # past half of dispatch_wait_seconds (20): a completion then wakes the Orchestrator
IDLE_RUNS, IDLE_GAP = 3, 4.0
PREFIX = "drain_"
SCHEDULE_EVENT = {"source": "aws.events", "detail-type": "Scheduled Event"}
ORCHESTRATOR = "sosw_orchestrator"
SCAVENGER = "sosw_scavenger"
FAILURE_HANDLER = "sosw_failure_handler"
#: The callers the proxy counts as the stack's: the functions' roles, and the producer (this harness's TaskManager).
STACK_CALLERS = ("producer", "orchestrator", "scavenger", "worker_assistant", "failure_handler", "worker")


def say(message: str) -> None:
    print(message, flush=True)


def scaled(n: int, minimum: int) -> int:
    return max(minimum, round(n * SCALE))


def drain_labourer(cap: int) -> str:
    return f"drain_c{cap}"


# ---------------------------------------------------------------------------------------------- figures


def spread(values: Iterable[float]) -> dict[str, Any]:
    values = list(values)
    return {
        "count": len(values),
        "median": percentile(values, 0.5),
        "p95": percentile(values, 0.95),
        "max": max(values) if values else None,
        "min": min(values) if values else None,
    }


def refill_latencies(invoked: list[float], freed: list[float], cap: int) -> list[float]:
    """How long a freed slot stayed empty: the (cap + k)-th invocation against the k-th slot freed (both sorted).

    With at most ``cap`` running, invocation number i (from 0) can only start once i - cap + 1 slots were freed;
    the gap to the (i - cap)-th freeing is the refill's latency, whichever task's slot it was.
    """
    invoked, freed = sorted(invoked), sorted(freed)
    return [invoked[i] - freed[i - cap] for i in range(cap, len(invoked)) if i - cap < len(freed)]


def count_requests(records: list[list[Any]], start: float, end: float) -> dict[str, Any]:
    """The stack's DynamoDB requests in [start, end): by caller and by operation; stream reads apart."""
    by_caller: Counter[str] = Counter()
    by_operation: Counter[str] = Counter()
    streams: Counter[str] = Counter()
    others: Counter[str] = Counter()
    for at, operation, caller in records:
        if not start <= at < end:
            continue
        if operation.startswith("Streams."):
            streams[operation] += 1
        elif caller in STACK_CALLERS:
            by_caller[caller] += 1
            by_operation[operation] += 1
        else:
            others[f"{caller}:{operation}"] += 1
    return {
        "total": sum(by_caller.values()),
        "by_caller": dict(by_caller),
        "by_operation": dict(by_operation),
        "stream_reads": sum(streams.values()),
        "unattributed": dict(others),
    }


# ---------------------------------------------------------------------------------------------- processes


class Proxy:
    """The counting proxy (``bench.ddb_proxy``) in its own process; ``records()`` fetches what it counted so far."""

    def __init__(self, upstream: str) -> None:
        self.process, self.url = start_server("bench.ddb_proxy", upstream)
        self._records: list[list[Any]] = []

    def records(self) -> list[list[Any]]:
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/_bench/requests?since={len(self._records)}", timeout=30) as reply:
            self._records.extend(json.loads(reply.read())["requests"])
        return self._records

    def stop(self) -> None:
        stop_server(self.process)


class Schedule:
    """The deployed schedules: EventBridge invokes the Orchestrator and the Scavenger asynchronously every period.

    ``start(period, labourers)`` ticks at once, then every ``period`` seconds until ``stop()``; the events name the
    phase's labourers (see the module's docstring) and carry EventBridge's ``source``, which tells them apart from
    wake-ups in the endpoint's record.
    """

    def __init__(self) -> None:
        self.client = aws.lambda_client()
        self.ticks: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, period: float, labourers: list[str]) -> None:
        self.stop()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(period, labourers, self._stop), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
            self._thread = None

    def _run(self, period: float, labourers: list[str], stop: threading.Event) -> None:
        payload = json.dumps({**SCHEDULE_EVENT, "labourers": labourers})
        while True:
            self.ticks.append(time.time())
            for name in (ORCHESTRATOR, SCAVENGER):
                self.client.invoke(FunctionName=name, InvocationType="Event", Payload=payload)
            if stop.wait(period):
                return


class RetryWatcher:
    """Reads the retry table every 0.1 s (uncounted) and keeps each waiting task's due time as first seen."""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table
        self.due: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> RetryWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for page in self.client.get_paginator("scan").paginate(TableName=self.table, ConsistentRead=True):
                for raw in page["Items"]:
                    item = deserialize_item(raw)
                    self.due.setdefault(item["task_id"], float(item["desired_launch_time"]))


# ---------------------------------------------------------------------------------------------- the harness


class DrainBench:
    def __init__(self, stack: LocalStack, proxy: Proxy, direct: Any) -> None:
        self.stack = stack
        self.proxy = proxy
        self.direct = direct  # DynamoDB Local itself: the harness's reads, never counted
        self.lam = stack.lambda_
        assert self.lam is not None
        self.tm = stack.task_manager()
        config = stack.config
        self.tables = {
            "tasks": config["dynamo_db_config"]["table_name"],
            "retry": config["sosw_retry_tasks_table"],
            "closed": config["sosw_closed_tasks_table"],
            "leases": config["sosw_orchestrator_leases_table"],
        }
        self.closed_index = self.tm.config["sosw_closed_tasks_labourer_status_index"]
        self.schedule = Schedule()
        self.problems: list[str] = []

    # ------------------------------------------------------------------ reads and waits (uncounted)

    def closed_count(self, labourer_id: str) -> int:
        total = 0
        for status in (1, 0):
            for page in self.direct.get_paginator("query").paginate(
                TableName=self.tables["closed"],
                IndexName=self.closed_index,
                KeyConditionExpression="labourer_id_task_status = :s",
                ExpressionAttributeValues={":s": {"S": f"{labourer_id}_{status}"}},
                Select="COUNT",
            ):
                total += page["Count"]
        return total

    def closed_rows(self, labourer_id: str) -> list[dict[str, Any]]:
        rows = []
        for page in self.direct.get_paginator("scan").paginate(
            TableName=self.tables["closed"],
            FilterExpression="labourer_id = :l",
            ExpressionAttributeValues={":l": {"S": labourer_id}},
            ConsistentRead=True,
        ):
            rows.extend(deserialize_item(i) for i in page["Items"])
        return rows

    def open_count(self) -> int:
        total = 0
        for table in (self.tables["tasks"], self.tables["retry"]):
            for page in self.direct.get_paginator("scan").paginate(TableName=table, Select="COUNT"):
                total += page["Count"]
        return total

    def running(self, labourer_id: str) -> int:
        keys = [counter_key(labourer_id)] + [shard_key(labourer_id, k) for k in range(SHARDS_MAX)]
        items = batch_get(self.direct, self.tables["leases"], keys)
        return running_from_items(items).get(labourer_id, 0)

    def wait_for(self, what: str, done: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return True
            time.sleep(interval)
        self.problems.append(f"timed out after {timeout:.0f} s waiting for {what}")
        say(f"   !! timed out after {timeout:.0f} s waiting for {what}")
        return False

    def wait_quiet(self, timeout: float = 120.0) -> None:
        """Until no asynchronous invocation is queued or running, for longer than the stream poller's interval."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.lam.wait_idle(max(1.0, deadline - time.monotonic())):
                time.sleep(1.0)
                if self.lam.in_flight() == 0:
                    return
        self.problems.append("the stack did not go quiet")

    def deliveries(self, function: str, since: int = 0) -> list[tuple[float, dict[str, Any]]]:
        return list(zip(self.lam.delivery_times[function][since:], self.lam.deliveries[function][since:], strict=True))

    def marks(self) -> dict[str, Any]:
        return {
            "deliveries": {name: len(events) for name, events in self.lam.deliveries.items()},
            "run_seconds": dict(self.lam.run_seconds),
            "runs": dict(self.lam.runs),
            "stream_batches": sum(p.batches for p in self.stack.stream_pollers),
            "stream_errors": sum(p.errors for p in self.stack.stream_pollers),
            "ticks": len(self.schedule.ticks),
            "time": time.time(),
            "cpu": machine_cpu_seconds(),
            "load": os.getloadavg()[0],
        }

    def activity(self, before: dict[str, Any], start: float, end: float) -> dict[str, Any]:
        """What happened between ``before`` (a :meth:`marks`) and now: DynamoDB requests, control invocations, load."""
        after = self.marks()
        orchestrator_events = [e for _t, e in self.deliveries(ORCHESTRATOR, before["deliveries"][ORCHESTRATOR])]
        scheduled = sum(1 for e in orchestrator_events if e.get("source") == "aws.events")
        cpu = None
        if before["cpu"] is not None and after["cpu"] is not None and end > start:
            cpu = (after["cpu"] - before["cpu"]) / ((os.cpu_count() or 1) * (after["time"] - before["time"]))

        def delta(key: str, name: str) -> float:
            return after[key].get(name, 0) - before[key].get(name, 0)

        return {
            "seconds": end - start,
            "requests": count_requests(self.proxy.records(), start, end),
            "orchestrator": {
                "scheduled": scheduled,
                "woken": len(orchestrator_events) - scheduled,  # wake-ups, relays of new tasks, hand-overs
                "stream_relays": after["stream_batches"] - before["stream_batches"],
                "stream_errors": after["stream_errors"] - before["stream_errors"],
                "runs": delta("runs", ORCHESTRATOR),
                "seconds": delta("run_seconds", ORCHESTRATOR),
            },
            "scavenger": {"runs": delta("runs", SCAVENGER), "seconds": delta("run_seconds", SCAVENGER)},
            "worker_assistant": {"runs": delta("runs", ASSISTANT), "seconds": delta("run_seconds", ASSISTANT)},
            "machine_cpu_share": cpu,
            "load": [round(before["load"], 2), round(after["load"], 2)],
        }

    # ------------------------------------------------------------------ phases

    def warm_up(self, specs: list[WorkerSpec]) -> dict[str, Any]:
        """Every process of every function runs once first: cold starts are not what this benchmark measures.

        The control functions get events that do nothing, as many at once as they have processes; each labourer
        gets one fill of short tasks through the whole stack (stream, Orchestrator, worker, WorkerAssistant).
        """
        say("== warm-up: every process of every function once (not measured)")
        started = time.monotonic()
        client = boto3.client("lambda", config=aws.LAMBDA_INVOKE_CONFIG.merge(Config(read_timeout=330)))
        nothing = {
            ORCHESTRATOR: {"labourers": []},
            SCAVENGER: {"labourers": []},
            ASSISTANT: {
                "action": "start_task",
                "task_id": "warm-up",
                "attempt": 1,
                "labourer_id": "probe",
                "token": "w",
            },
            FAILURE_HANDLER: {"requestPayload": {"task_id": "warm-up", "attempts": 1, "labourer_id": "probe"}},
        }

        def call(name: str) -> None:
            client.invoke(FunctionName=name, InvocationType="RequestResponse", Payload=json.dumps(nothing[name]))

        with ThreadPoolExecutor(max_workers=16) as pool:
            for name in nothing:
                list(pool.map(call, [name] * _concurrency(self.lam, name)))
        self.schedule.start(LATENCY_SCHEDULE_SECONDS, [s.name for s in specs])  # whatever a wake-up misses
        for spec in specs:
            before, mark = self.closed_count(spec.name), len(self.lam.deliveries[spec.name])
            self.tm.create_tasks(self.tm.get_labourer(spec.name), [{"sleep": 0.3}] * spec.concurrency)
            if spec.name == "burst":  # the sink reports nothing: its tasks are completed as the burst completes them
                self.wait_for("the sink's warm-up", lambda m=mark: len(self.lam.deliveries["burst"]) - m >= 4, 120)
                for _t, event in self.deliveries("burst", mark):
                    self.lam.invoke_async(ASSISTANT, _completion_report(event))
            self.wait_for(
                f"{spec.name}'s warm-up", lambda s=spec, b=before: self.closed_count(s.name) >= b + s.concurrency, 120
            )
        self.schedule.stop()
        self.wait_quiet()
        return {"seconds": round(time.monotonic() - started, 1)}

    def latency(self) -> dict[str, Any]:
        say(
            f"== latency: create-to-invoke ({TRICKLE_N} tasks, {TRICKLE_GAP} s apart), retry-due-to-start "
            f"({RETRY_N} retries, {len(DELAYS)} + {LATE_N} delayed tasks); "
            f"schedule every {LATENCY_SCHEDULE_SECONDS:g} s"
        )
        tm = self.tm
        probe, late = tm.get_labourer("probe"), tm.get_labourer("late")
        self.schedule.start(LATENCY_SCHEDULE_SECONDS, ["probe", "late"])
        self.wait_quiet()
        tick = self.schedule.ticks[-1]
        probe_closed, late_closed = self.closed_count("probe"), self.closed_count("late")
        before = self.marks()
        start = time.time()
        mark = len(self.lam.deliveries["probe"])
        late_mark = len(self.lam.deliveries["late"])
        late_tasks = [tm.create_delayed_task(late, {"sleep": 0.1}, LATE_DELAY) for _ in range(LATE_N)]
        for i in range(TRICKLE_N):
            time.sleep(max(0.0, start + i * TRICKLE_GAP - time.time()))
            tm.create_task(probe, sleep=TRICKLE_SLEEP, trickle=i)
        self.wait_for("the trickle's tasks", lambda: self.closed_count("probe") >= probe_closed + TRICKLE_N, 60)
        trickle = [t - e["created_at"] for t, e in self.deliveries("probe", mark) if e.get("attempts") == 1]

        watcher = RetryWatcher(self.direct, self.tables["retry"]).start()
        mark = len(self.lam.deliveries["probe"])
        failing = set(tm.create_tasks(probe, [{"fail_attempts": 1, "sleep": 0.1}] * RETRY_N))
        delayed = {
            t["task_id"]: float(t["desired_launch_time"])
            for t in (tm.create_delayed_task(probe, {"sleep": 0.1}, delay) for delay in DELAYS)
        }
        total = probe_closed + TRICKLE_N + RETRY_N + len(DELAYS)
        self.wait_for("the retried and delayed tasks", lambda: self.closed_count("probe") >= total, 90)
        self.wait_for(
            "the delayed tasks nothing follows",
            lambda: self.closed_count("late") >= late_closed + LATE_N,
            2 * LATENCY_SCHEDULE_SECONDS + 30,
        )
        watcher.stop()
        self.schedule.stop()
        self.wait_quiet()
        end = time.time()
        retries, delayed_following = [], []
        for at, event in self.deliveries("probe", mark):
            task_id = event["task_id"]
            if task_id in failing and event.get("attempts") == 2 and task_id in watcher.due:
                retries.append(at - watcher.due[task_id])
            elif task_id in delayed and event.get("attempts") == 1:
                delayed_following.append(at - delayed[task_id])
        late_due = {t["task_id"]: float(t["desired_launch_time"]) for t in late_tasks}
        delayed_idle = [
            at - late_due[e["task_id"]] for at, e in self.deliveries("late", late_mark) if e.get("attempts") == 1
        ]
        ticks = [t for t in self.schedule.ticks if t >= tick]
        if len(retries) != RETRY_N:
            self.problems.append(f"latency: {len(retries)} retries seen of {RETRY_N}")
        result = {
            "schedule_seconds": LATENCY_SCHEDULE_SECONDS,
            "create_to_invoke": spread(trickle),
            "retry_due_to_start": spread(retries),
            "delayed_following_due_to_start": spread(delayed_following),
            "delayed_idle_due_to_start": spread(delayed_idle),
            "delayed_idle_created_after_tick": round(start - tick, 2),
            "delayed_idle_due_after_tick": round(min(late_due.values()) - tick, 2),
            "ticks_after_start": [round(t - tick, 2) for t in ticks],
            "activity": self.activity(before, start, end),
        }
        say(
            f"   create-to-invoke {_fmt_spread(result['create_to_invoke'])}; retry due-to-start "
            f"{_fmt_spread(result['retry_due_to_start'])}; delayed (run following) "
            f"{_fmt_spread(result['delayed_following_due_to_start'])}; delayed (nothing following) "
            f"{_fmt_spread(result['delayed_idle_due_to_start'])}"
        )
        return result

    def drain(self, n: int, d: float, cap: int) -> dict[str, Any]:
        labourer_id = drain_labourer(cap)
        ideal = n * d / cap
        say(f"== drain: N = {n}, d = {d:g} s, C = {cap} (ideal {ideal:.1f} s)")
        labourer = self.tm.get_labourer(labourer_id)
        self.schedule.start(SCHEDULE_SECONDS, [labourer_id])
        self.wait_quiet()
        closed_before = self.closed_count(labourer_id)
        before = self.marks()
        mark = len(self.lam.deliveries[labourer_id])
        start = time.time()
        self.tm.create_tasks(labourer, [{"sleep": d}] * n)
        created = time.time()
        self.wait_for(
            f"{n} tasks closed", lambda: self.closed_count(labourer_id) >= closed_before + n, max(180.0, 6 * ideal)
        )
        self.wait_quiet()
        end = time.time()
        self.schedule.stop()
        result = self._drain_figures(labourer_id, n, d, cap, start, mark)
        result.update(create_seconds=created - start, activity=self.activity(before, start, end))
        result["requests_per_task"] = result["activity"]["requests"]["total"] / n
        say(
            f"   drained in {result['drain_seconds']:.1f} s (ideal {ideal:.1f} s; one fill a minute "
            f"{result['one_fill_per_minute_seconds']:.0f} s); "
            f"create-to-invoke {_fmt_spread(result['create_to_invoke'])}"
            f"; slot refill {_fmt_spread(result['slot_refill'])}; {result['requests_per_task']:.2f} requests/task"
        )
        return result

    def _drain_figures(self, labourer_id: str, n: int, d: float, cap: int, start: float, mark: int) -> dict[str, Any]:
        rows = [r for r in self.closed_rows(labourer_id) if float(r["created_at"]) >= start - 1]
        first = [(t, e) for t, e in self.deliveries(labourer_id, mark) if e.get("attempts") == 1]
        invoked = [t for t, _e in first]
        completed = [float(r["completed_at"]) for r in rows if "completed_at" in r]
        to_invoke = [t - e["created_at"] for t, e in first]
        by_time = sorted(first, key=lambda te: te[0])
        if len(rows) != n or len(completed) != n:
            self.problems.append(f"{labourer_id}: {len(rows)} closed, {len(completed)} completed, expected {n}")
        drain_seconds = (max(completed) - start) if completed else None
        return {
            "labourer": labourer_id,
            "n": n,
            "d": d,
            "cap": cap,
            "ideal_seconds": n * d / cap,
            "one_fill_per_minute_seconds": (math.ceil(n / cap) - 1) * SCHEDULE_SECONDS + d,
            "drain_seconds": drain_seconds,
            "first_invoke_seconds": (min(invoked) - start) if invoked else None,
            "create_to_invoke": spread(to_invoke),
            "create_to_invoke_first_fill": spread(t - e["created_at"] for t, e in by_time[:cap]),
            "slot_refill": spread(refill_latencies(invoked, completed, cap)),
            "deliveries": len(self.lam.deliveries[labourer_id]) - mark,
            "extra_attempts": sum(int(r["attempts"]) - 1 for r in rows),
            "peak_running": self.lam.peaks[labourer_id],
        }

    def failures(self, n: int, d: float, cap: int) -> dict[str, Any]:
        """Slots freed by failures, refilled: the (cap + k)-th invocation against the k-th failing worker's end.

        The worker reports its failure to the WorkerAssistant (which frees the slot in the same transaction)
        before it returns, so its end is at or after the slot was freed: the refill measured is an upper bound.
        """
        say(f"== failures: N = {n} tasks failing after {d:g} s, C = {cap}, dead at their one attempt")
        labourer = self.tm.get_labourer(FAILING)
        self.schedule.start(SCHEDULE_SECONDS, [FAILING])
        self.wait_quiet()
        closed_before = self.closed_count(FAILING)
        mark, ended_mark = len(self.lam.deliveries[FAILING]), len(self.lam.finish_times[FAILING])
        start = time.time()
        self.tm.create_tasks(labourer, [{"sleep": d, "always_fail": True}] * n)
        self.wait_for(f"{n} failing tasks closed", lambda: self.closed_count(FAILING) >= closed_before + n, 180)
        self.wait_quiet()
        self.schedule.stop()
        invoked = [t for t, e in self.deliveries(FAILING, mark) if e.get("attempts") == 1]
        ended = self.lam.finish_times[FAILING][ended_mark:]
        rows = [r for r in self.closed_rows(FAILING) if float(r["created_at"]) >= start - 1]
        dead = sum(1 for r in rows if str(r.get("labourer_id_task_status", "")).endswith("_0"))
        if dead != n or len(invoked) != n:
            self.problems.append(f"failures: {dead} dead of {n}, {len(invoked)} invoked")
        result = {
            "labourer": FAILING,
            "n": n,
            "d": d,
            "cap": cap,
            "slot_refill": spread(refill_latencies(invoked, ended, cap)),
            "dead": dead,
            "peak_running": self.lam.peaks[FAILING],
            "seconds": round(time.time() - start, 1),
        }
        say(f"   {dead} dead; slot refill after a failure {_fmt_spread(result['slot_refill'])}")
        return result

    def burst(self, wait: float, label: str) -> dict[str, Any]:
        n = scaled(BURST_N, 100)
        say(f"== burst ({label}): {n} completions queued at the WorkerAssistant at once")
        labourer = self.tm.get_labourer("burst")
        self.schedule.start(SCHEDULE_SECONDS, ["burst"])
        self.wait_quiet()
        closed_before = self.closed_count("burst")
        mark = len(self.lam.deliveries["burst"])
        self.tm.create_tasks(labourer, [{"i": i} for i in range(n)])
        self.wait_for(f"{n} sink invocations", lambda: len(self.lam.deliveries["burst"]) - mark >= n, 120)
        self.wait_quiet()
        received = self.deliveries("burst", mark)
        if wait:
            time.sleep(max(0.0, max(t for t, _e in received) + wait - time.time()))
        reports = [_completion_report(event) for _t, event in received]
        before = self.marks()
        start = time.time()
        for report in reports:
            self.lam.invoke_async(ASSISTANT, report)
        queued = time.time()
        self.wait_for(f"{n} burst tasks closed", lambda: self.closed_count("burst") >= closed_before + n, 180)
        self.wait_quiet()
        end = time.time()
        self.schedule.stop()
        rows = [r for r in self.closed_rows("burst") if float(r["closed_at"]) >= int(start)]
        closed_times = sorted(float(r["completed_at"]) for r in rows)
        activity = self.activity(before, start, end)
        ran = [start - (float(e["greenfield"]) - self.tm.config["greenfield_invocation_delta"]) for _t, e in received]
        result = {
            "label": label,
            "n": n,
            "ran_seconds": spread(ran),
            "queued_seconds": queued - start,
            "completions_seconds": (closed_times[-1] - closed_times[0]) if closed_times else None,
            "orchestrator_invocations": activity["orchestrator"]["woken"],
            "assistant_processes": _concurrency(self.lam, ASSISTANT),
            "activity": activity,
        }
        say(
            f"   {n} reports queued in {result['queued_seconds'] * 1000:.0f} ms, applied over "
            f"{result['completions_seconds'] or 0:.1f} s: {result['orchestrator_invocations']} Orchestrator "
            f"invocation(s) started ({activity['orchestrator']['seconds']:.1f} s of Orchestrator time)"
        )
        return result

    def idle(self) -> dict[str, Any]:
        say(f"== idle: {IDLE_RUNS} scheduled runs, {IDLE_GAP:g} s apart, nothing to do")
        self.schedule.stop()
        self.wait_quiet()
        if self.open_count():
            self.problems.append(f"idle: {self.open_count()} task(s) still open or waiting")
        client = boto3.client("lambda", config=aws.LAMBDA_INVOKE_CONFIG.merge(Config(read_timeout=330)))
        payload = json.dumps(SCHEDULE_EVENT)  # the deployed schedule's event: every labourer
        before = self.marks()
        start = time.time()
        runs = []
        for k in range(IDLE_RUNS):
            if k:
                time.sleep(IDLE_GAP)
            run: dict[str, Any] = {}
            for name, key in ((ORCHESTRATOR, "orchestrator"), (SCAVENGER, "scavenger")):
                seconds = self.lam.run_seconds[name]
                began = time.time()
                client.invoke(FunctionName=name, InvocationType="RequestResponse", Payload=payload)
                run[key] = {"window": [began, time.time()], "seconds": self.lam.run_seconds[name] - seconds}
            runs.append(run)
        time.sleep(IDLE_GAP)
        end = time.time()
        records = self.proxy.records()
        windows = [r[key]["window"] for r in runs for key in ("orchestrator", "scavenger")]
        inside = sum(count_requests(records, a, b)["total"] for a, b in windows)
        total = count_requests(records, start, end)
        per_run = {
            key: {
                "requests": sum(count_requests(records, *r[key]["window"])["total"] for r in runs) / IDLE_RUNS,
                "seconds": sum(r[key]["seconds"] for r in runs) / IDLE_RUNS,
            }
            for key in ("orchestrator", "scavenger")
        }
        labourers = len(self.tm.open_run_window())
        result = {
            "runs": IDLE_RUNS,
            "gap_seconds": IDLE_GAP,
            "labourers": labourers,
            "per_run": per_run,
            "requests_between_runs": total["total"] - inside,
            "requests_per_hour": 60 * (per_run["orchestrator"]["requests"] + per_run["scavenger"]["requests"]),
            "orchestrator_seconds_per_hour": 60 * per_run["orchestrator"]["seconds"],
            "stream_reads_per_hour": total["stream_reads"] * 3600 / (end - start),
            "activity": self.activity(before, start, end),
        }
        say(
            f"   per run: Orchestrator {per_run['orchestrator']['requests']:.1f} requests, "
            f"{per_run['orchestrator']['seconds'] * 1000:.0f} ms; Scavenger {per_run['scavenger']['requests']:.1f} "
            f"requests; between runs {result['requests_between_runs']} requests ({labourers} labourers)"
        )
        return result

    def one_pass(self, n: int, d: float, cap: int) -> dict[str, Any]:
        labourer_id = drain_labourer(cap)
        say(f"== one-pass: the N = {n}, d = {d:g} s, C = {cap} drain by one-pass runs, no stream, no wake-ups")
        for poller in self.stack.stream_pollers:
            poller.stop()
        self.stack.stream_pollers = []
        self.schedule.stop()
        self.wait_quiet()
        labourer = self.tm.get_labourer(labourer_id)
        client = boto3.client("lambda", config=aws.LAMBDA_INVOKE_CONFIG.merge(Config(read_timeout=330)))
        one_pass = json.dumps({**SCHEDULE_EVENT, "labourers": [labourer_id], "follow": False})
        closed_before = self.closed_count(labourer_id)
        before = self.marks()
        mark = len(self.lam.deliveries[labourer_id])
        start = time.time()
        self.tm.create_tasks(labourer, [{"sleep": d}] * n)
        passes = 0
        deadline = time.monotonic() + max(300.0, 20 * n * d / cap)
        while self.closed_count(labourer_id) < closed_before + n and time.monotonic() < deadline:
            client.invoke(FunctionName=ORCHESTRATOR, InvocationType="RequestResponse", Payload=one_pass)
            passes += 1
            self.wait_for("a fill to end", lambda: self.running(labourer_id) == 0, 60, interval=0.05)
        self.wait_quiet()
        client.invoke(
            FunctionName=SCAVENGER,
            InvocationType="RequestResponse",
            Payload=json.dumps({**SCHEDULE_EVENT, "labourers": [labourer_id]}),
        )
        end = time.time()
        result = self._drain_figures(labourer_id, n, d, cap, start, mark)
        result.update(passes=passes, activity=self.activity(before, start, end))
        result["requests_per_task"] = result["activity"]["requests"]["total"] / n
        say(f"   {passes} one-pass runs; {result['requests_per_task']:.2f} requests/task")
        return result


def _concurrency(lam: Any, name: str) -> int:
    function = lam.function(name)
    return function.spec.concurrency if function else 0


def _completion_report(event: dict[str, Any]) -> dict[str, Any]:
    """What ``sosw.worker.Worker`` sends the WorkerAssistant when ``process`` returns (see ``Worker._run``)."""
    payload = {k: v for k, v in event.items() if k not in WORKER_EVENT_FIELDS}
    task = {k: event[k] for k in WORKER_EVENT_FIELDS if k in event}
    task["payload"] = json.dumps(payload, default=str)
    return {
        "action": "mark_task_as_completed",
        "task_id": event["task_id"],
        "result": {"i": payload.get("i")},
        "stats": {"duration": 0.001},
        "task": task,
        "attempt": event["attempts"],
    }


def _fmt_spread(s: dict[str, Any]) -> str:
    if not s.get("count"):
        return "n/a"
    return f"median {s['median']:.2f} s, p95 {s['p95']:.2f} s (n = {s['count']})"


# ---------------------------------------------------------------------------------------------- the stack


def workers(drains: list[tuple[int, float, int]]) -> list[WorkerSpec]:
    probe = {
        "max_simultaneous_invocations": PROBE_CAP,
        "max_attempts": 3,
        "retry_policy": "linear",
        "max_duration": RETRY_DUE,
    }
    return [
        WorkerSpec("probe", probe, concurrency=PROBE_CAP),
        WorkerSpec("late", {"max_simultaneous_invocations": LATE_N}, concurrency=LATE_N),
        WorkerSpec(FAILING, {"max_simultaneous_invocations": FAIL_CAP, "max_attempts": 1}, concurrency=FAIL_CAP),
        *[WorkerSpec(drain_labourer(c), {"max_simultaneous_invocations": c}, concurrency=c) for _n, _d, c in drains],
        WorkerSpec(
            "burst",
            {"max_simultaneous_invocations": scaled(BURST_N, 100)},
            code_dir=str(ROOT / "bench" / "drain_sink"),
            concurrency=4,
        ),
    ]


def build_stack(specs: list[WorkerSpec], dynamodb_url: str, log_dir: Path) -> LocalStack:
    spec = programmatic_stack(specs, PREFIX)
    # Each function's requests name its role in the User-Agent, which the proxy reads (see bench.ddb_proxy).
    spec.functions = [replace(f, environment={**f.environment, "AWS_SDK_UA_APP_ID": f.role}) for f in spec.functions]
    return LocalStack(
        spec=spec,
        worker_concurrency={w.name: w.concurrency for w in specs},
        dynamodb_endpoint=dynamodb_url,
        log_dir=log_dir,
    )


def run(dynamodb_url: str) -> dict[str, Any]:
    drains = [(scaled(n, 2 * c), d, c) for n, d, c in DRAINS]
    os.environ["AWS_SDK_UA_APP_ID"] = "producer"  # this process: the producer's TaskManager (and stream reads)
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    started = time.monotonic()
    result: dict[str, Any] = {
        "command": " ".join(
            [*(f"{k}={os.environ[k]}" for k in ("BENCH_SCALE", "BENCH_WORKLOADS") if os.environ.get(k)), "make bench"]
        ),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "scale": SCALE,
        "cores": os.cpu_count(),
        "load_start": round(os.getloadavg()[0], 2),
        "schedule_seconds": SCHEDULE_SECONDS,
    }
    direct = boto3.session.Session().client(
        "dynamodb",
        endpoint_url=dynamodb_url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    proxy = Proxy(dynamodb_url)
    log_dir = Path(tempfile.mkdtemp(prefix="sosw-bench-drain-"))
    specs = workers(drains)
    try:
        say(
            f"drain: starting the local stack ({len(specs)} labourers, "
            f"{sum(w.concurrency for w in specs)} worker processes); logs in {log_dir}"
        )
        stack = build_stack(specs, proxy.url, log_dir).start()
        result["stack_start_seconds"] = round(time.monotonic() - started, 1)
        bench = DrainBench(stack, proxy, direct)
        try:
            bench.wait_quiet()
            result["warm_up"] = bench.warm_up(specs)
            result["latency"] = bench.latency()
            result["drains"] = [bench.drain(n, d, c) for n, d, c in drains]
            result["failures"] = bench.failures(scaled(FAIL_N, 2 * FAIL_CAP), FAIL_D, FAIL_CAP)
            result["burst"] = bench.burst(BURST_LONG_SECONDS, "tasks that ran 11 s")
            result["idle"] = bench.idle()
            n, d, c = drains[0]
            result["one_pass"] = bench.one_pass(n, d, c)
            result["problems"] = bench.problems
        finally:
            bench.schedule.stop()
            stack.stop()
    finally:
        proxy.stop()
    result["ok"] = not result.get("problems")
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    result["load_end"] = round(os.getloadavg()[0], 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dynamodb-url", help="a running DynamoDB Local (default: start one)")
    parser.add_argument("--out", help="write the result here as JSON")
    args = parser.parse_args()
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        os.environ.pop(key, None)
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    if args.dynamodb_url:
        result = run(args.dynamodb_url)
    else:
        with DynamoDBLocal() as ddb:
            result = run(ddb.endpoint_url)
    text = json.dumps(result, indent=1, default=str)
    if args.out:
        Path(args.out).write_text(text + "\n")
    else:
        print(text)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
