"""The demo: the whole stack on this machine, a few hundred tasks, a live view, a checked summary.

Two labourers run the example worker: ``reliable`` (every task completes on its first attempt) and
``flaky`` (slow; some tasks fail their first attempt, some always fail, some pass the timeout). The
reliable tasks are one job, sent to the Scheduler Lambda as sosw's job event: it is followed as one
thing (its own progress bar) and ends with one ``Job Finished`` event, read back from EventBridge. The
schedules run ``speed`` times faster than the stack's rates (``--speed 60``: a minute per second);
durations and cooldowns are short instead of a fake clock. The exit code is 0 only when every task
ended closed exactly as its payload says it should.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from sosw.local.stack import LocalStack
from sosw.local.template import synthesize

#: The demo's stack, as cdk.json context: the local run is the stack this synthesizes. The cooldown
#: leaves room for the cold starts of a few dozen local processes on two cores: the start guard
#: refuses a delivery that starts later than the cooldown after its claim.
DEMO_CONTEXT: dict[str, Any] = {
    "stage": "demo",
    "nag": False,
    "dashboard": False,
    # sosw's Scheduler config: the demo's job is chunked by section, one task each
    "task_manager": {"job_schema": {"chunkable_attrs": [["section", {}]]}},
    "workers": {
        "reliable": {
            "code": "lambdas/worker",
            "timeout": 8,
            "max_simultaneous_invocations": 10,
            "duration": 8,
            "cooldown": 20,
        },
        "flaky": {
            "code": "lambdas/worker",
            "timeout": 5,
            "max_simultaneous_invocations": 8,
            "duration": 5,
            "cooldown": 20,
            "max_attempts": 3,
            "retry_policy": "exponential",
            "retry_base": 1,
            "retry_cap": 3,
        },
    },
}


@dataclass
class Expectation:
    """What the demo's payloads promise: how each task must end."""

    completed: set[str] = field(default_factory=set)
    dead: set[str] = field(default_factory=set)
    attempts: dict[str, int] = field(default_factory=dict)


def flaky_payloads(n: int) -> list[tuple[dict[str, Any], str, int]]:
    """(payload, expected end, expected attempts): 20% fail once, 5% always fail, 4% time out."""
    result = []
    for i in range(n):
        if i % 20 == 0:
            result.append(({"always_fail": True, "sleep": 0.1}, "dead", 3))
        elif i % 25 == 1:
            result.append(({"sleep": 7}, "dead", 3))  # passes the 5 s timeout every time
        elif i % 5 == 2:
            result.append(({"fail_attempts": 1, "sleep": 0.1}, "completed", 2))
        else:
            result.append(({"sleep": 0.1}, "completed", 1))
    return result


def demo_stack(cdk_out: Path | None = None, **kwargs: Any) -> LocalStack:
    """The demo's local stack: the CDK app synthesized with :data:`DEMO_CONTEXT`, run from its template."""
    # local: the layer's pip build is skipped, the local processes run this machine's sosw (no download).
    out = synthesize(cdk_out or Path(tempfile.mkdtemp(prefix="sosw-demo-cdk-")), DEMO_CONTEXT, local=True)
    return LocalStack.from_template(out, **kwargs)


def run_demo(
    tasks: int = 300,
    *,
    speed: float = 60,
    timeout: float = 120,
    dynamodb_endpoint: str | None = None,
    console: Console | None = None,
) -> int:
    """Run the demo; returns the process exit code (0: every task ended as expected)."""
    console = console or Console()
    n_reliable = tasks * 2 // 3
    n_flaky = tasks - n_reliable
    started = time.monotonic()
    console.print(f"[bold]sosw demo[/]: synthesizing the stack ({len(DEMO_CONTEXT['workers'])} workers)...")
    with demo_stack(dynamodb_endpoint=dynamodb_endpoint) as stack:
        tick = stack.spec.schedules.get(stack.orchestrator, 60) / speed
        console.print(
            f"local stack up in {time.monotonic() - started:.1f} s: {len(stack.spec.tables)} tables and "
            f"{len(stack.spec.functions)} functions from the template; schedules every {tick:.2f} s "
            f"(speed {speed:g}x); {tasks} tasks. Logs: {stack.log_dir}"
        )
        tm = stack.task_manager()
        expect = Expectation()
        reliable_ids = _submit_job(stack, tm, n_reliable, console)
        expect.completed.update(reliable_ids)
        expect.attempts.update(dict.fromkeys(reliable_ids, 1))
        plan = flaky_payloads(n_flaky)
        flaky_ids = tm.create_tasks(tm.get_labourer("flaky"), [p for p, _, _ in plan])
        for task_id, (_payload, end, attempts) in zip(flaky_ids, plan, strict=True):
            (expect.completed if end == "completed" else expect.dead).add(task_id)
            expect.attempts[task_id] = attempts
        totals = {"reliable": n_reliable, "flaky": n_flaky}
        counts, letters, events = _drive(stack, tm, totals, tick, timeout, console)
        closed = _closed_tasks(stack)
        job = tm.get_job(JOB_ID)
        elapsed = time.monotonic() - started
    code = _summary(console, counts, closed, expect, elapsed, letters)
    return _job_summary(console, job, events, n_reliable) or code


#: The demo's job: the reliable labourer's tasks, as one sosw job.
JOB_ID = "demo-job"


def _submit_job(stack: LocalStack, tm: Any, n: int, console: Console) -> list[str]:
    """sosw's job event to the Scheduler Lambda (asynchronously); its tasks' ids are derived from the job."""
    sections = {f"s{i:04d}": {"echo": i, "sleep": 0.05} for i in range(n)}
    job = {"lambda_name": "reliable", "isolate_sections": True, "sections": sections}
    stack.submit_job({"job": job, "job_id": JOB_ID, "tolerated_failure_percentage": 0})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = tm.list_jobs(limit=5)
        if found and found[0]["state"] != "creating":
            console.print(f"job {JOB_ID}: the Scheduler made {found[0]['total']} tasks for reliable")
            return [f"{JOB_ID}.{i}" for i in range(n)]
        time.sleep(0.2)
    raise RuntimeError(f"the Scheduler did not create job {JOB_ID} (see the logs in {stack.log_dir})")


def _drive(stack: LocalStack, tm: Any, totals: dict[str, int], tick: float, timeout: float, console: Console):
    progress = Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
    )
    bars = {name: progress.add_task(name, total=total, detail="") for name, total in totals.items()}
    job_bar = progress.add_task("job", total=totals["reliable"], detail="")
    deadline = time.monotonic() + timeout
    counts: dict[str, dict[str, Any]] = {}
    letters: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    with Live(progress, console=console, refresh_per_second=8, transient=False):
        while time.monotonic() < deadline:
            tick_started = time.monotonic()
            stack.schedule_tick()
            letters.extend(stack.dead_letters())
            events = stack.job_events()
            job = tm.get_job(JOB_ID)
            progress.update(
                job_bar,
                completed=job["closed"],
                detail=f"{JOB_ID} {job['state']:<9} completed {job['completed']:>3}  dead {job['dead']}  "
                f"cancelled {job['cancelled']}  end event: {'published' if events else 'not yet'}",
            )
            for labourer in tm.open_run_window():
                c = tm.get_labourer_counts(labourer)
                counts[labourer.id] = c
                closed = c["closed_completed"] + c["dead"]
                detail = (
                    f"queued {c['queued']:>3}  running {c['running']:>2}  waiting {c['waiting']:>2}  "
                    f"completed {c['closed_completed']:>3}  dead {c['dead']:>2}"
                )
                progress.update(bars[labourer.id], completed=closed, detail=detail)
            if events and all(counts[n]["closed_completed"] + counts[n]["dead"] >= t for n, t in totals.items()):
                break
            time.sleep(max(0.0, tick - (time.monotonic() - tick_started)))
    stack.lambda_.wait_idle(10)
    letters.extend(stack.dead_letters())
    return counts, letters, stack.job_events()


def _job_summary(console: Console, job: dict[str, Any], events: list[dict[str, Any]], n: int) -> int:
    """The job's end: one ``Job Finished`` event whose counts are the job's (every task completed)."""
    for event in events:
        d = event["detail"]
        console.print(
            f"event {event['detail-type']!r} (source {event['source']}): job {d['job_id']}, "
            f"completed {d['completed']}, dead {d['dead']}, cancelled {d['cancelled']}, "
            f"in {d['duration_seconds']:.1f} s"
        )
    kinds = [e["detail-type"] for e in events]
    if kinds != ["Job Finished"] or events[0]["detail"]["completed"] != n or job["completed"] != n:
        console.print(f"[red]FAIL[/] job {JOB_ID}: end events {kinds}, {job['completed']} of {n} completed")
        return 1
    console.print(f"[green]OK[/]: job {JOB_ID} followed as one thing: {n} tasks, one end event")
    return 0


def _closed_tasks(stack: LocalStack) -> list[dict[str, Any]]:
    from sosw import aws
    from sosw.dynamo import deserialize_item

    client = aws.dynamodb_client()
    items: list[dict[str, Any]] = []
    table = stack.config["sosw_closed_tasks_table"]
    for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items.extend(deserialize_item(i) for i in page["Items"])
    return items


def _summary(console: Console, counts, closed, expect: Expectation, elapsed: float, dead_letters) -> int:
    table = Table(title=f"sosw demo: {len(expect.attempts)} tasks in {elapsed:.1f} s")
    for column in ("labourer", "completed", "dead", "attempts", "still open", "notifications"):
        table.add_column(column, justify="right")
    notes = Counter(m["labourer_id"] for m in dead_letters)
    for labourer_id, c in counts.items():
        rows = [t for t in closed if t["labourer_id"] == labourer_id]
        open_left = c["queued"] + c["running"] + c["expired"] + c["waiting"] + c["completed"] + c["failed"]
        table.add_row(
            labourer_id,
            str(c["closed_completed"]),
            str(c["dead"]),
            str(sum(t["attempts"] for t in rows)),
            str(open_left),
            str(notes[labourer_id]),
        )
    console.print(table)
    problems = []
    by_id = Counter(t["task_id"] for t in closed)
    if set(by_id) != set(expect.attempts):
        problems.append(f"{len(set(expect.attempts) - set(by_id))} task(s) not closed")
    if by_id and max(by_id.values()) > 1:
        problems.append("a task was closed twice")
    extra_attempts = 0
    for task in closed:
        task_id = task["task_id"]
        want_dead = task_id in expect.dead
        wanted = expect.attempts.get(task_id, 0)
        if task["labourer_id_task_status"].endswith("_0") != want_dead:
            problems.append(f"{task_id} ended {'completed' if not want_dead else 'dead'} unexpectedly")
        elif want_dead and task["attempts"] != wanted:
            problems.append(f"{task_id} ({task['labourer_id']}): dead after {task['attempts']} attempts, not {wanted}")
        elif task["attempts"] < wanted:
            problems.append(
                f"{task_id} ({task['labourer_id']}): completed in {task['attempts']} attempts, "
                f"before its payload lets it ({wanted})"
            )
        else:
            # A completed task may need more attempts than its payload asks when the machine is slow
            # (a worker timed out, or its delivery started too late): retried, as it should be.
            extra_attempts += task["attempts"] - wanted
    if sorted(m["task_id"] for m in dead_letters) != sorted(expect.dead):
        problems.append(f"{len(dead_letters)} dead-task notifications for {len(expect.dead)} dead tasks")
    if problems:
        for problem in problems[:10]:
            console.print(f"[red]FAIL[/] {problem}")
        return 1
    retried = f"; {extra_attempts} attempt(s) retried beyond the plan (slow machine)" if extra_attempts else ""
    console.print(
        f"[green]OK[/]: every task closed exactly once as expected "
        f"({len(expect.completed)} completed, {len(expect.dead)} dead, one notification each{retried})"
    )
    return 0
