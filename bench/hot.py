"""The "hot labourer" workload (issues 18 and 19): one busy labourer, with DynamoDB's limits and without.

DynamoDB Local serialises transactions and never throttles; DynamoDB cancels a transaction that meets another
on one item, and limits each partition key. A labourer whose every claim and close writes one item meets the
first; one whose tasks share one index key meets the second. This workload shows both on the project's own
classes, as a busy user would drive them:

- the Orchestrator following the work (``Orchestrator(tm).run(remaining, follow=True)``, one run after the
  other, in a thread), invoking through a loopback Lambda endpoint that accepts an Invoke after 20 ms
  (``SimulatedWorkers`` of ``tests/reliability/workers.py``);
- each delivery runs the project's ``Worker`` class (``sosw.worker``): its start guard, 1 s of work, its
  completion report with its copy of the task, both through the ``WorkerAssistant`` (called in process: a
  stand-in Lambda client). A report that raises is delivered again after ``REDELIVERY_SECONDS``, at most twice,
  as Lambda does with an asynchronous invocation that failed (a worker whose start raised, likewise);
- one labourer, caps 20, 50, 100 and 200, 10 x cap tasks (``BENCH_SCALE`` scales that): a quarter created
  before the run, half as one job (``create_job``) and the last quarter in batches while the run goes on.

Each cap runs with the emulation off (DynamoDB Local as it is) and on (``bench.ddb_limits``: transactions hold
their items for their call plus 15 ms; each partition key gets AWS's 1,000 write and 3,000 read units a second
divided by ``LIMIT_FACTOR``, on-demand tables), in three interleaved off/on pairs; the tables give the medians of
the pairs. Why the factor: this machine closes a labourer's tasks at some 50 a second at most, a quarter of the
~200 a second that AWS's 1,000 write units allow one labourer's key of the tasks index (5 units a task, issue
19); dividing the limits by 4 puts that ceiling where this machine can reach it.

Two designs side by side, as ``bench/idle.py`` does: ``BENCH_HOT_BASELINE`` (default: the commit before the slot
counter redesign), checked out into a temporary git worktree, and the current tree; each run in a fresh
interpreter importing that side's ``shared/`` (``BENCH_HOT_DESIGNS=current`` runs only the current tree).

Figures per run: tasks/s (against the ideal cap / 1 s), transaction conflicts a close (the emulation's
``TransactionConflict`` cancellations of close transactions, divided by accepted closes: a close transaction
is a ``TransactWriteItems`` sent by the WorkerAssistant's client, which carries ``app/assistant`` in its
User-Agent), close latency p50 / p99 (the WorkerAssistant call that closed the task, its retries included),
reports raised, tasks not closed exactly once after redelivery, throttles (the emulation's throttle refusals)
of which not retried (those that reached the project's callers: a report or start that raised, an Orchestrator
run's error), peak running against the cap.

    BENCH_SCALE=0.1 BENCH_HOT_DESIGNS=current .venv/bin/python -m bench.hot   # a quick look (~8 min, busy machine)
    .venv/bin/python -m bench.hot        # writes bench/hot_results.json and bench/hot_results.md
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import checked_out, percentile, say, write_results

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
#: The commit before the slot counter redesign (issue 19).
BASELINE = os.environ.get("BENCH_HOT_BASELINE", "47719b1")
DESIGNS = [d for d in os.environ.get("BENCH_HOT_DESIGNS", "baseline,current").split(",") if d]
CAPS = [int(c) for c in os.environ.get("BENCH_HOT_CAPS", "20,50,100,200").split(",")]
PAIRS = int(os.environ.get("BENCH_HOT_PAIRS", "3"))
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
TASKS_PER_CAP = 10
TASK_SECONDS = 1.0
INVOKE_SECONDS = 0.020
HOLD_SECONDS = 0.015
LIMIT_FACTOR = float(os.environ.get("BENCH_HOT_LIMIT_FACTOR", "4"))
AWS_WRITE_UNITS, AWS_READ_UNITS = 1000, 3000
#: Lambda redelivers a failed asynchronous invocation after about a minute, twice; shortened to keep runs short.
REDELIVERY_SECONDS = 5.0
REDELIVERIES = 2
LABOURER = "hot"
RUN_SECONDS = 60.0  # the Orchestrator's schedule
THROTTLES = ("Throttl", "ProvisionedThroughputExceeded")


def is_throttle(text: str) -> bool:
    return any(t in text for t in THROTTLES)


def caused_by_throttle(exc: BaseException | None) -> bool:
    """Whether a throttle (an error code, or a transaction's cancellation reason) is in ``exc``'s chain."""
    seen = 0
    while exc is not None and seen < 10:
        response = getattr(exc, "response", None) or {}
        codes = [response.get("Error", {}).get("Code", "")] + [
            r.get("Code", "") for r in response.get("CancellationReasons", []) or []
        ]
        if any(is_throttle(c) for c in codes) or is_throttle(str(exc)):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


# ---------------------------------------------------------------------------------------------- the child


class Lambda:
    """A Lambda client for the Worker: invokes the WorkerAssistant in this process, redelivering as Lambda does.

    A synchronous call (the start guard) that raises answers a function error (the Worker then raises, and its
    own delivery is retried); an asynchronous one (a report) that raises is delivered again after
    ``REDELIVERY_SECONDS``, at most ``REDELIVERIES`` times.
    """

    def __init__(self, assistant: Any, figures: Figures) -> None:
        self.assistant = assistant
        self.figures = figures

    def invoke(self, FunctionName: str, InvocationType: str, Payload: str) -> dict[str, Any]:
        event = json.loads(Payload)
        if InvocationType == "RequestResponse":
            try:
                body = self.assistant.handle(event)
            except Exception as exc:
                self.figures.raised("start", exc)
                return {"FunctionError": "Unhandled", "Payload": _Body({"errorMessage": str(exc)})}
            return {"Payload": _Body(body)}
        self.deliver(event, 0)
        return {"StatusCode": 202}

    def deliver(self, event: dict[str, Any], redelivery: int) -> None:
        started = time.monotonic()
        try:
            outcome = self.assistant.handle(event)
        except Exception as exc:
            self.figures.raised("report", exc)
            if redelivery < REDELIVERIES:
                timer = threading.Timer(REDELIVERY_SECONDS, self.deliver, args=(event, redelivery + 1))
                timer.daemon = True
                self.figures.pending.append(timer)
                timer.start()
            return
        self.figures.closed(event, outcome, time.monotonic() - started)


class _Body:
    def __init__(self, body: Any) -> None:
        self._data = json.dumps(body).encode()

    def read(self) -> bytes:
        return self._data


class Figures:
    """What the child counts on the project's side (the emulation counts the rest)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.raises: Counter[str] = Counter()
        self.throttles_raised = 0
        self.latencies: list[float] = []
        self.outcomes: Counter[str] = Counter()
        self.last_close = 0.0
        self.pending: list[threading.Timer] = []
        self.orchestrator_errors: list[str] = []

    def raised(self, what: str, exc: BaseException) -> None:
        with self.lock:
            self.raises[what] += 1
            self.throttles_raised += caused_by_throttle(exc)

    def closed(self, event: dict[str, Any], outcome: dict[str, Any], seconds: float) -> None:
        with self.lock:
            self.outcomes[f"{event['action']}:{outcome['outcome']}"] += 1
            if outcome["outcome"] == "accepted":
                self.latencies.append(seconds)
                self.last_close = time.monotonic()


def _tag(client: Any, caller: str) -> None:
    """Name the caller in the User-Agent (``app/<caller>``), where the emulation counts by caller."""

    def before_send(request: Any, **_: Any) -> None:
        agent = request.headers.get("User-Agent", "")
        if isinstance(agent, bytes):
            agent = agent.decode()
        request.headers["User-Agent"] = f"{agent} app/{caller}"

    client.meta.events.register("before-send.dynamodb", before_send)


def _table_counts(config: dict[str, Any], direct_url: str) -> tuple[Counter[str], Counter[str], list[dict[str, Any]]]:
    """How many times each task id is in the tasks and retry tables, and in the closed table (read directly, not
    through the emulation); and a few of the tasks left open, as they are, to say why."""
    import boto3

    from sosw.dynamo import deserialize_item
    from sosw.schema import table_schemas

    client = boto3.client("dynamodb", endpoint_url=direct_url)
    open_, closed = Counter[str](), Counter[str]()
    left: list[dict[str, Any]] = []
    for role, schema in table_schemas(config).items():
        if role not in ("tasks", "retry", "closed"):
            continue
        target = closed if role == "closed" else open_
        for page in client.get_paginator("scan").paginate(TableName=schema.name, ConsistentRead=True):
            target.update(item["task_id"]["S"] for item in page["Items"])
            if role != "closed":
                left += [{"table": role, **deserialize_item(i)} for i in page["Items"][: 5 - len(left)]]
    return open_, closed, left


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One run of one design (this interpreter imports that design's ``shared/``)."""
    import sosw
    from sosw import aws
    from sosw.local.tables import create_tables, prefixed_config
    from sosw.managers.task import TaskManager
    from sosw.orchestrator import Orchestrator
    from sosw.worker import Worker
    from sosw.worker_assistant import WorkerAssistant
    from tests.reliability.workers import SimulatedWorkers

    cap, n = spec["cap"], spec["tasks"]
    labourer = {"max_simultaneous_invocations": cap, "duration": 600, "cooldown": 300, "max_duration": 600}
    config = prefixed_config(spec["prefix"], {"labourers": {LABOURER: labourer}})
    create_tables(aws.dynamodb_client(), config)
    figures = Figures()
    assistant_tm = TaskManager(config)
    _tag(assistant_tm.dynamo_db_client, "assistant")
    fake_lambda = Lambda(WorkerAssistant(assistant_tm), figures)

    class Sleeper(Worker):
        def process(self, payload: dict[str, Any]) -> Any:
            time.sleep(TASK_SECONDS)
            return {"ok": True}

    worker = Sleeper(lambda_client=fake_lambda)

    def work(_labourer: str, event: dict[str, Any], redelivery: int = 0) -> None:
        try:
            worker.handler(event)
        except Exception as exc:  # its start guard raised: Lambda delivers the event again
            figures.raised("worker", exc)
            if redelivery < REDELIVERIES:
                timer = threading.Timer(REDELIVERY_SECONDS, work, args=(_labourer, event, redelivery + 1))
                timer.daemon = True
                figures.pending.append(timer)
                timer.start()

    workers = SimulatedWorkers(config, work=work, threads=cap + 32, invoke_seconds=INVOKE_SECONDS)
    os.environ["AWS_ENDPOINT_URL_LAMBDA"] = workers.url
    creator = TaskManager(config)
    _tag(creator.dynamo_db_client, "creator")
    first, in_job = n // 4, n // 2
    later = n - first - in_job
    creator.create_tasks(creator.get_labourer(LABOURER), [{"n": i} for i in range(first)])
    stop = threading.Event()
    errors: list[str] = []

    def orchestrate() -> None:
        while not stop.is_set():
            tm = TaskManager(config)
            _tag(tm.dynamo_db_client, "orchestrator")
            # A run as the schedule starts one a minute: it follows the work for up to a minute, then the next
            # starts (no stream wakes dispatch here when tasks are created: a run that ended sees them next time).
            ends = time.monotonic() + float(tm.config.get("orchestrator_safety_seconds", 5)) + RUN_SECONDS

            def remaining(ends: float = ends) -> float:
                return 0.0 if stop.is_set() else max(0.0, ends - time.monotonic())

            try:
                report = Orchestrator(tm).run(remaining, follow=True)
                errors.extend(f"{k}: {v.error}" for k, v in report.labourers.items() if v.error)
            except Exception as exc:  # a run that raised: the next scheduled one starts over
                errors.append(f"run raised {type(exc).__name__}: {exc}")
                figures.throttles_raised += caused_by_throttle(exc)
            time.sleep(0.05)

    def create_more() -> None:
        creator.create_job(LABOURER, [{"j": i} for i in range(in_job)], job_id="hot-job")
        for start in range(0, later, 25):
            creator.create_tasks(
                creator.get_labourer(LABOURER), [{"m": i} for i in range(start, min(later, start + 25))]
            )
            time.sleep(0.2)

    started = time.monotonic()
    threads = [threading.Thread(target=orchestrate), threading.Thread(target=create_more)]
    for thread in threads:
        thread.start()
    deadline = started + spec["timeout"]
    done = False
    while time.monotonic() < deadline and not done:
        time.sleep(0.5)
        with figures.lock:
            accepted = sum(v for k, v in figures.outcomes.items() if k.startswith("mark_task_as_completed:accepted"))
        done = accepted >= n
    stop.set()
    for thread in threads:
        thread.join(120)
    for timer in list(figures.pending):
        timer.join(REDELIVERY_SECONDS * (REDELIVERIES + 1) + 30)
    workers.close()
    open_, closed, left_open = _table_counts(config, spec["direct_url"])
    ids = set(open_) | set(closed)
    elapsed = (figures.last_close or time.monotonic()) - started
    accepted = figures.outcomes["mark_task_as_completed:accepted"]
    throttle_errors = sum(is_throttle(e) for e in errors)
    return {
        "sosw": os.path.dirname(sosw.__file__),
        "cap": cap,
        "tasks": n,
        "known_tasks": len(ids),
        "done": done,
        "seconds": round(elapsed, 2),
        "tasks_per_second": round(accepted / elapsed, 2) if elapsed > 0 else 0.0,
        "closes_accepted": accepted,
        "report_outcomes": dict(figures.outcomes),
        "close_p50_ms": round(1000 * (percentile(figures.latencies, 0.5) or 0), 1),
        "close_p99_ms": round(1000 * (percentile(figures.latencies, 0.99) or 0), 1),
        "reports_raised": figures.raises["report"],
        "starts_raised": figures.raises["start"],
        "not_closed_once": sum(1 for t in ids if closed[t] != 1 or open_[t]) + max(0, n - len(ids)),
        "peak": workers.peaks[LABOURER],
        "invocations": len(workers.invocations),
        "left_open": json.loads(json.dumps(left_open, default=str)),
        "orchestrator_errors": errors[:20],
        "orchestrator_error_count": len(errors),
        "throttles_not_retried": figures.throttles_raised + throttle_errors,
    }


# ---------------------------------------------------------------------------------------------- the parent


def _run(shared: Path, spec: dict[str, Any], proxy_url: str) -> dict[str, Any]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "PYTHONPATH"))},
        "PYTHONPATH": os.pathsep.join([str(shared), str(ROOT)]),
        "AWS_ENDPOINT_URL_DYNAMODB": proxy_url,
        "AWS_ENDPOINT_URL_CLOUDWATCH": "http://127.0.0.1:9",  # no labourer reads health metrics; never reached
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "POWERTOOLS_LOG_LEVEL": "CRITICAL",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "bench-hot",
        "POWERTOOLS_METRICS_NAMESPACE": "bench",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.hot", "--child", json.dumps(spec)],
        env=env,
        cwd=tempfile.gettempdir(),  # not the checkout: its own shared/ must not shadow the side's
        capture_output=True,
        text=True,
        timeout=spec["timeout"] + 300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith('{"sosw"')]
    if done.returncode or not lines:
        raise RuntimeError(f"hot run {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1])


def _emulation(stats: dict[str, Any]) -> dict[str, Any]:
    """The figures the emulation counted in one run."""
    closes = stats.get("callers", {}).get("assistant", {}).get("TransactWriteItems", {})
    throttles = sum(n for reasons in stats.get("refused", {}).values() for r, n in reasons.items() if is_throttle(r))
    conflicts = sum(
        n for reasons in stats.get("refused", {}).values() for r, n in reasons.items() if "TransactionConflict" in r
    )
    hot_items = sorted(stats.get("refused_items", {}).items(), key=lambda kv: -sum(kv[1].values()))[:3]
    return {
        "close_conflicts": closes.get("TransactionConflict", 0),
        "close_transactions_accepted": closes.get("accepted", 0),
        "throttles": throttles,
        "conflicts": conflicts,
        "refused": stats.get("refused", {}),
        "hottest_items": {item: sum(c.values()) for item, c in hot_items},
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the pairs of one (design, cap, emulation)."""

    def median(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    conflicts_a_close = [r["close_conflicts"] / r["closes_accepted"] if r["closes_accepted"] else 0.0 for r in runs]
    return {
        "runs": len(runs),
        "tasks": runs[0]["tasks"],
        "tasks_per_second": median("tasks_per_second"),
        "conflicts_a_close": round(statistics.median(conflicts_a_close), 3),
        "close_p50_ms": median("close_p50_ms"),
        "close_p99_ms": median("close_p99_ms"),
        "reports_raised": median("reports_raised"),
        "not_closed_once": median("not_closed_once"),
        "throttles": median("throttles"),
        "throttles_not_retried": median("throttles_not_retried"),
        "peak": max(r["peak"] for r in runs),
        "all_done": all(r["done"] for r in runs),
    }


def render(results: dict[str, Any]) -> str:
    lines = [
        f"Hot labourer: one labourer, 1 s tasks, 20 ms Invoke latency, {TASKS_PER_CAP * SCALE:g} x cap tasks "
        f"(a quarter queued first, half as one job, a quarter created during the run); medians of {PAIRS} "
        f"interleaved off/on pairs. Emulation on: transactions hold their items for the call + "
        f"{HOLD_SECONDS * 1000:g} ms; per partition key {results['write_units']:g} write and "
        f"{results['read_units']:g} read units a second (AWS's 1,000 / 3,000 divided by {LIMIT_FACTOR:g}), "
        f"on-demand. Measured {results['date']} on {results['cores']} cores shared with other sessions.",
        "",
        "| design | cap | tasks | emulation | tasks/s (ideal) | conflicts a close | close p50 / p99 ms "
        "| reports raised | not closed once | throttles (not retried) | peak / cap |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in results["summary"]:
        s = row["figures"]
        lines.append(
            f"| {row['design']} | {row['cap']} | {s['tasks']} | {row['emulation']} "
            f"| {s['tasks_per_second']:.1f} ({row['cap']}) | {s['conflicts_a_close']:.2f} "
            f"| {s['close_p50_ms']:.0f} / {s['close_p99_ms']:.0f} | {s['reports_raised']:g} "
            f"| {s['not_closed_once']:g} | {s['throttles']:g} ({s['throttles_not_retried']:g}) "
            f"| {s['peak']} / {row['cap']}{'' if s['all_done'] else ' (not all closed in time)'} |"
        )
    designs = ", ".join(f"{name}: `{ref}`" for name, ref in results["designs"].items())
    lines += ["", f"Designs: {designs}. Command: `BENCH_WORKLOADS=hot make bench` (`python -m bench.hot`)."]
    return "\n".join(lines) + "\n"


def _one(limits: Any, shared: Path, cap: int, emulation: str, number: int) -> dict[str, Any]:
    """One run: the emulation reset and set on or off, a child on ``shared``, and what both counted."""
    n = max(cap, round(TASKS_PER_CAP * cap * SCALE))
    limits.reset()
    limits.configure(
        enabled=emulation == "on",
        hold_seconds=HOLD_SECONDS,
        write_units=AWS_WRITE_UNITS / LIMIT_FACTOR,
        read_units=AWS_READ_UNITS / LIMIT_FACTOR,
        billing={},
    )
    spec = {
        "cap": cap,
        "tasks": n,
        "prefix": f"hot{number}_",
        "timeout": RUN_SECONDS + 30 + n / 3,
        "direct_url": limits.upstream_url,
    }
    result = _run(shared, spec, limits.endpoint_url)
    result.update(_emulation(limits.stats()), emulation=emulation)
    return result


def main() -> int:
    from bench.ddb_limits import LimitsProxy
    from sosw.local.dynamodb_local import DynamoDBLocal

    runs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        trees = {"baseline": stack.enter_context(checked_out(BASELINE))} if "baseline" in DESIGNS else {}
        if "current" in DESIGNS:
            trees["current"] = ROOT / "shared"
        ddb = stack.enter_context(DynamoDBLocal())
        limits = stack.enter_context(LimitsProxy(ddb.endpoint_url))
        for pair in range(1, PAIRS + 1):
            for cap in CAPS:
                for design, shared in trees.items():
                    for emulation in ("off", "on"):
                        result = _one(limits, shared, cap, emulation, len(runs) + 1)
                        result.update(design=design, pair=pair)
                        runs.append(result)
                        say(
                            f"hot pair {pair} cap {cap} {design} emulation {emulation}: "
                            f"{result['tasks_per_second']:.1f} tasks/s, "
                            f"{result['close_conflicts']}/{result['closes_accepted']} close conflicts, "
                            f"close p50/p99 {result['close_p50_ms']:.0f}/{result['close_p99_ms']:.0f} ms, "
                            f"{result['reports_raised']} reports raised, {result['not_closed_once']} not "
                            f"closed once, {result['throttles']} throttles "
                            f"({result['throttles_not_retried']} not retried), peak {result['peak']}"
                        )
    summary = [
        {
            "design": design,
            "cap": cap,
            "emulation": emulation,
            "figures": summarize(
                [r for r in runs if (r["design"], r["cap"], r["emulation"]) == (design, cap, emulation)]
            ),
        }
        for cap in CAPS
        for design in trees
        for emulation in ("off", "on")
    ]
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cores": os.cpu_count(),
        "scale": SCALE,
        "limit_factor": LIMIT_FACTOR,
        "write_units": AWS_WRITE_UNITS / LIMIT_FACTOR,
        "read_units": AWS_READ_UNITS / LIMIT_FACTOR,
        "hold_seconds": HOLD_SECONDS,
        "redelivery_seconds": REDELIVERY_SECONDS,
        "designs": {d: BASELINE if d == "baseline" else "the current tree" for d in trees},
        "summary": summary,
        "runs": runs,
    }
    write_results("hot", results, render(results))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        print(json.dumps(child(json.loads(sys.argv[2]))), flush=True)
        sys.exit(0)
    sys.exit(main())
