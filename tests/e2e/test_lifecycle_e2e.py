"""End to end: DynamoDB Local, moto's server (SSM, SNS, CloudWatch), and the real handlers of
``lambdas/`` behind the local Lambda endpoint. Time moves through short durations and cooldowns.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import boto3
import pytest

from sosw.local.stack import ASSISTANT, LocalStack, WorkerSpec, programmatic_stack
from sosw.managers.ecology import EcologyManager
from sosw.orchestrator import Orchestrator
from sosw.scavenger import Scavenger
from tests.conftest import scan_all

pytestmark = pytest.mark.integration

SCALE = 1 if os.environ.get("SOSW_SCALE", "ci") == "full" else 0
_prefix = itertools.count()


def fast(**settings):
    """Labourer settings for a test that must finish in seconds."""
    return {"duration": 3, "cooldown": 10, "max_duration": 1, **settings}


@pytest.fixture
def stack_factory(dynamodb_local, tmp_path):
    stacks = []

    def make(workers, **kwargs):
        stack = LocalStack(
            workers,
            dynamodb_endpoint=dynamodb_local.endpoint_url,
            table_prefix=f"e2e{os.getpid()}_{next(_prefix)}_",
            log_dir=tmp_path / "logs",
            **kwargs,
        ).start()
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


def drive(stack, *, rounds=120, pause=0.3, check=None):
    """Run the schedules (Orchestrator then Scavenger) until no task is open or waiting."""
    for _ in range(rounds):
        stack.run_orchestrator()
        if check:
            check()
        stack.run_scavenger()
        tables = scan_all(stack.config)
        if not tables["tasks"] and not tables["retry"]:
            stack.lambda_.wait_idle(10)
            return tables
        time.sleep(pause)
    raise AssertionError(
        f"tasks still open after {rounds} rounds: {len(tables['tasks'])} open, {len(tables['retry'])} waiting"
    )


def closed_exactly_once(tables, expected_ids):
    closed_ids = Counter(t["task_id"] for t in tables["closed"])
    assert set(closed_ids) == set(expected_ids)
    assert max(closed_ids.values()) == 1
    assert tables["tasks"] == [] and tables["retry"] == []


def test_two_labourers_with_limits_all_complete_and_are_archived(stack_factory):
    # Given 300 tasks over two labourers with different caps, one also rate limited
    stack = stack_factory(
        [
            # twice the cap in endpoint slots: an over-cap invocation would run at once and show in the peak
            WorkerSpec("wide", fast(max_simultaneous_invocations=8), concurrency=16),
            WorkerSpec("narrow", fast(max_simultaneous_invocations=3, max_invocations_per_minute=40), concurrency=6),
        ]
    )
    tm = stack.task_manager()
    wide, narrow = tm.get_labourer("wide"), tm.get_labourer("narrow")
    ids = tm.create_tasks(wide, [{"sleep": 0.05, "echo": i} for i in range(260)])
    ids += tm.create_tasks(narrow, [{"sleep": 0.05} for _ in range(40)])
    peaks = Counter()

    def check():
        probe = stack.task_manager()
        for lab in probe.open_run_window():
            running = probe.get_count_of_running_tasks_for_labourer(lab)
            peaks[lab.id] = max(peaks[lab.id], running)
            assert running <= lab.max_simultaneous_invocations, f"{lab.id}: {running} running"

    started = time.monotonic()
    tables = drive(stack, check=check)
    elapsed = time.monotonic() - started

    # Then every task completed and was closed once, within the caps and the rate limit
    closed_exactly_once(tables, ids)
    # (a retry caused by a slow machine, a worker past its timeout, is allowed: it still ends completed)
    assert all(t["labourer_id_task_status"].endswith("_1") for t in tables["closed"])
    deliveries = stack.lambda_.deliveries
    assert len(deliveries["wide"]) == 260 and len(deliveries["narrow"]) == 40
    assert stack.lambda_.peaks["wide"] <= 8 and stack.lambda_.peaks["narrow"] <= 3, stack.lambda_.peaks
    assert elapsed < 60, "the 40 narrow tasks fit in one rate-limit window"
    print(f"\n300 tasks in {elapsed:.1f} s, peak running {dict(peaks)}")


def test_rate_limit_holds_within_the_minute(stack_factory):
    limited = fast(max_simultaneous_invocations=50, max_invocations_per_minute=10)
    stack = stack_factory([WorkerSpec("limited", limited, concurrency=20)])
    tm = stack.task_manager()
    tm.create_tasks(tm.get_labourer("limited"), [{}] * 30)
    started = time.monotonic()
    for _ in range(5):
        stack.run_orchestrator()
        stack.run_scavenger()
    assert time.monotonic() - started < 50
    stack.lambda_.wait_idle(10)
    assert len(stack.lambda_.deliveries["limited"]) == 10  # not 30: the cap allows 50, the rate 10 a minute
    assert tm.get_length_of_queue_for_labourer(tm.get_labourer("limited")) == 20


def test_flaky_labourer_every_task_ends_closed_exactly_once(stack_factory):
    # Given a flaky labourer: 20% fail their first attempt, 5% always fail, some time out or crash
    stack = stack_factory(
        [
            WorkerSpec(
                "flaky",
                fast(
                    max_simultaneous_invocations=10,
                    max_attempts=3,
                    retry_policy="exponential",
                    retry_base=1,
                    retry_cap=2,
                ),
                # room for a slow machine: a worker waits on the WorkerAssistant before it works
                timeout=3,
                concurrency=20,
            )
        ]
    )
    tm = stack.task_manager()
    flaky = tm.get_labourer("flaky")
    n = 100 * (1 + 4 * SCALE)
    payloads = []
    for i in range(n):
        if i % 20 == 0:
            payloads.append({"always_fail": True})
        elif i % 5 == 1:
            payloads.append({"fail_attempts": 1})
        elif i % 25 == 2:
            payloads.append({"sleep": 6})  # passes the 3 s timeout: killed, reported by the failure handler
        else:
            payloads.append({"echo": i})
    ids = tm.create_tasks(flaky, payloads)

    tables = drive(stack, rounds=200)

    closed_exactly_once(tables, ids)
    by_id = {t["task_id"]: t for t in tables["closed"]}
    always = [ids[i] for i in range(n) if "always_fail" in payloads[i]]
    timeouts = [ids[i] for i in range(n) if "sleep" in payloads[i]]
    dead = {t for t, row in by_id.items() if row["labourer_id_task_status"] == "flaky_0"}
    assert dead == set(always) | set(timeouts)
    assert all(by_id[t]["attempts"] == 3 for t in dead)
    assert {by_id[t]["last_error"]["type"] for t in timeouts} == {"Sandbox.Timedout"}
    retried_once = [ids[i] for i in range(n) if "fail_attempts" in payloads[i]]
    assert all(by_id[t]["attempts"] == 2 and by_id[t]["labourer_id_task_status"] == "flaky_1" for t in retried_once)
    notes = stack.dead_letters()
    assert sorted(m["task_id"] for m in notes) == sorted(dead)
    assert all(m["attempts"] == 3 and m["labourer_id"] == "flaky" for m in notes)
    # No attempt was delivered twice
    deliveries = Counter((e["task_id"], e["attempts"]) for e in stack.lambda_.deliveries["flaky"])
    assert max(deliveries.values()) == 1
    assert stack.lambda_.peaks["flaky"] <= 10
    print(f"\nflaky: {n} tasks, {len(dead)} dead, {sum(deliveries.values())} deliveries, 0 duplicates")


def test_health_bad_gets_nothing_and_moderate_gets_half(stack_factory):
    metric = {
        "details": {
            "Namespace": "Test/Db",
            "MetricName": "Load",
            "Dimensions": [{"Name": "Db", "Value": "x"}],
            "Period": 60,
            "Statistics": ["Average"],
        },
        "feelings": {4: 10, 2: 50},  # <= 10 High, <= 50 Moderate, above: Bad
        "feeling_comparison_operator": "__le__",
    }
    stack = stack_factory(
        [
            WorkerSpec("sick", fast(max_simultaneous_invocations=10, health_metrics={"load": metric})),
        ]
    )
    tm = stack.task_manager()
    sick = tm.get_labourer("sick")
    cloudwatch = boto3.client("cloudwatch")

    def load(value):
        cloudwatch.put_metric_data(
            Namespace="Test/Db",
            MetricData=[
                {
                    "MetricName": "Load",
                    "Dimensions": [{"Name": "Db", "Value": "x"}],
                    "Value": value,
                    "Timestamp": datetime.now(tz=UTC),
                }
            ],
        )

    load(90)  # Bad
    time.sleep(1)
    # The new tasks wake the Orchestrator through the stream: it must already see the labourer Bad
    tm.create_tasks(sick, [{"sleep": 5}] * 20)
    time.sleep(1)
    stack.lambda_.wait_idle(10)
    assert not stack.lambda_.deliveries["sick"]
    assert stack.run_orchestrator(follow=False)["invoked"] == 0
    load(20)  # now the average of 90 and 20: 55, still Bad
    time.sleep(1)
    assert stack.run_orchestrator(follow=False)["invoked"] == 0
    for _ in range(6):
        load(20)  # average drops to Moderate
    time.sleep(1)
    assert stack.run_orchestrator(follow=False)["invoked"] == 5  # floor(10 x 0.5) - 0 running


def test_two_orchestrators_and_two_scavengers_at_once(stack_factory):
    stack = stack_factory([WorkerSpec("shared", fast(max_simultaneous_invocations=6), concurrency=12)])
    tm = stack.task_manager()
    ids = tm.create_tasks(tm.get_labourer("shared"), [{"sleep": 0.1, "fail_attempts": i % 7 == 0} for i in range(120)])
    stop = threading.Event()
    errors = []
    peak = [0]

    def loop(kind):
        try:
            manager = stack.task_manager(ecology_client=None)
            while not stop.is_set():
                if kind == "orchestrator":
                    Orchestrator(stack.task_manager(ecology_client=EcologyManager(manager.config))).run()
                    probe = stack.task_manager()
                    [lab] = probe.open_run_window()
                    peak[0] = max(peak[0], probe.get_count_of_running_tasks_for_labourer(lab))
                else:
                    Scavenger(stack.task_manager()).run()
                time.sleep(0.05)
        except Exception as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=loop, args=(k,)) for k in ("orchestrator", "orchestrator", "scavenger", "scavenger")
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        tables = scan_all(stack.config)
        if not tables["tasks"] and not tables["retry"]:
            break
        time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(60)
    stack.lambda_.wait_idle(10)
    assert errors == []
    tables = scan_all(stack.config)
    closed_exactly_once(tables, ids)
    deliveries = Counter((e["task_id"], e["attempts"]) for e in stack.lambda_.deliveries["shared"])
    assert max(deliveries.values()) == 1, "an attempt was invoked twice"
    assert peak[0] <= 6 and stack.lambda_.peaks["shared"] <= 6


def test_late_and_sosw_style_reports_through_the_worker_assistant(stack_factory):
    stack = stack_factory([WorkerSpec("slow", fast(max_simultaneous_invocations=2), concurrency=1)])
    tm = stack.task_manager()
    slow = tm.get_labourer("slow")
    lam = boto3.client("lambda")

    def report(event):
        body = lam.invoke(FunctionName=ASSISTANT, Payload=json.dumps(event).encode())["Payload"].read()
        return json.loads(body)

    # A sosw-style report (no attempt number) completes the current attempt
    task = tm.create_task(slow, payload={})
    tm.mark_task_invoked(tm.register_labourers()[0], task)
    assert (
        report({"action": "mark_task_as_completed", "task_id": task["task_id"], "stats": {"n": 1}})["outcome"]
        == "accepted"
    )
    # A late report for an attempt that was moved to the retry table is rejected and leaves no row
    other = tm.create_task(slow, payload={})
    claimed = tm.mark_task_invoked(tm.register_labourers()[0], other)
    assert tm.move_task_to_retry_table(claimed, 60)
    late = report({"action": "mark_task_as_completed", "task_id": other["task_id"], "attempt": 1})
    assert late["outcome"] == "stale"
    tables = scan_all(stack.config)
    assert [t["task_id"] for t in tables["tasks"]] == [task["task_id"]]
    # Bad input is a clear error, not a write
    response = lam.invoke(FunctionName=ASSISTANT, Payload=b'{"action": "explode", "task_id": "x"}')
    assert response.get("FunctionError") and "action" in response["Payload"].read().decode()


def test_duplicate_delivery_runs_the_work_once_and_stale_attempts_not_at_all(stack_factory):
    stack = stack_factory([WorkerSpec("once", fast(max_simultaneous_invocations=2), concurrency=2)])
    tm = stack.task_manager()
    [once] = tm.register_labourers()
    claimed = tm.mark_task_invoked(once, tm.create_task(once, payload={"echo": "x"}))
    event = tm.worker_event(claimed)
    lam = boto3.client("lambda")

    def deliver(e):
        return json.loads(lam.invoke(FunctionName="once", Payload=json.dumps(e).encode())["Payload"].read())

    assert deliver(event)["status"] == "completed"
    assert deliver(event)["status"] == "skipped"  # Lambda's at-least-once: the same attempt again
    assert deliver({**event, "attempts": 7})["status"] == "skipped"  # an attempt that is not current
    stack.lambda_.wait_idle(10)
    # the worker's completion closed the task at once, with its result
    closed = tm.get_closed_task_by_id(claimed["task_id"])
    assert closed["result"] == {"echo": "x", "attempt": 1} and closed["labourer_id_task_status"] == "once_1"
    assert tm.get_task_by_id(claimed["task_id"]) == {}


def test_with_the_schedule_off_wake_ups_alone_start_new_refill_freed_and_start_delayed_tasks(stack_factory):
    # Given the local stack with no schedule ticking at all: only the streams and the reports wake dispatch
    stack = stack_factory([WorkerSpec("solo", fast(max_simultaneous_invocations=1), concurrency=2)])
    tm = stack.task_manager()
    solo = tm.get_labourer("solo")
    # When three tasks are created for one slot, and a task delayed by 3 s
    ids = tm.create_tasks(solo, [{"sleep": 0.2, "echo": i} for i in range(3)])
    delayed = tm.create_delayed_task(solo, {"echo": "later"}, delay=3)["task_id"]
    [failing] = tm.create_tasks(solo, [{"fail_attempts": 1}])
    # Then each starts without a scheduled run: the first from the tasks stream, the others in the freed slot,
    # the delayed one from the retry table's stream, at its due time, and the failed one again after its retry
    # delay (the failure handler wakes the Scavenger, which puts it to wait and wakes the Orchestrator)
    closed = {}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and len(closed) < 5:
        closed = {t["task_id"]: t for t in scan_all(stack.config)["closed"]}
        time.sleep(0.5)
    assert set(closed) == {*ids, delayed, failing}
    assert all(t["labourer_id_task_status"] == "solo_1" for t in closed.values())
    # (due times are whole seconds, as sosw's: due at the second the task was created in, plus 3)
    assert closed[delayed]["completed_at"] >= int(closed[delayed]["created_at"]) + 3
    assert closed[failing]["attempts"] == 2
    assert stack.lambda_.peaks["solo"] <= 1
    assert sum(p.batches for p in stack.stream_pollers) >= 2  # the tasks stream and the retry table's


def test_with_every_wake_up_dropped_the_schedule_alone_still_drains_the_queue(stack_factory):
    # Given the local stack with no stream, and every wake-up sent to a function that doesn't exist (lost)
    solo = WorkerSpec(
        "solo", fast(max_simultaneous_invocations=2, retry_policy="linear", retry_base=1, retry_cap=1), concurrency=2
    )
    spec = programmatic_stack([solo], table_prefix=f"e2e{os.getpid()}_{next(_prefix)}_")
    spec.streams = []
    for function in spec.functions:
        for key in ("SOSW_ORCHESTRATOR_FUNCTION", "SOSW_SCAVENGER_FUNCTION"):
            if key in function.environment:
                function.environment[key] = "wake-ups-go-nowhere"
    stack = stack_factory(None, spec=spec, worker_concurrency={"solo": 2})
    tm = stack.task_manager()
    labourer = tm.get_labourer("solo")
    ids = tm.create_tasks(labourer, [{"sleep": 0.2}] * 6 + [{"fail_attempts": 1}] * 3)
    ids.append(tm.create_delayed_task(labourer, {"echo": "later"}, delay=2)["task_id"])
    # When only the schedule runs (shortened to a tick a second)
    tables = scan_all(stack.config)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (tables["tasks"] or tables["retry"]):
        stack.schedule_tick()
        time.sleep(1)
        tables = scan_all(stack.config)
    stack.lambda_.wait_idle(10)
    # Then every task ended closed exactly once, within the cap, retries and the delayed one included
    closed_exactly_once(scan_all(stack.config), ids)
    assert stack.lambda_.peaks["solo"] <= 2
    # And every Orchestrator run was a scheduled one: wake-ups were sent, and all were lost
    assert all(event == {} for event in stack.lambda_.deliveries[stack.orchestrator])
    logs = "".join(path.read_text() for path in stack.log_dir.glob("*.log"))
    assert "Wake-up not sent" in logs and "wake-ups-go-nowhere" in logs


def test_an_idle_stack_runs_nothing_between_two_scheduled_runs(stack_factory):
    # Given the local stack with its streams and wake-ups, and nothing to do
    stack = stack_factory([WorkerSpec("solo", fast(max_simultaneous_invocations=2), concurrency=1)])
    stack.schedule_tick()
    time.sleep(0.5)
    stack.lambda_.wait_idle(30)
    runs, batches = dict(stack.lambda_.runs), sum(p.batches for p in stack.stream_pollers)
    assert runs[stack.orchestrator] == runs[stack.scavenger] == 1  # the scheduled runs ended: no busy loop
    # When nothing happens for longer than a following run's longest pause and its wait for work
    time.sleep(4)  # longer than a following run's longest pause (1 s), and than the stream poller's
    # Then no function ran and no stream batch came: every DynamoDB request of the stack is a function's
    assert dict(stack.lambda_.runs) == runs
    assert sum(p.batches for p in stack.stream_pollers) == batches
    assert not stack.lambda_.deliveries[stack.orchestrator][1:]
