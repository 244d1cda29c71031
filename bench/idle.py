"""What an idle scheduled Orchestrator run costs, before continuous dispatch and now, side by side (issue 13).

An idle stack pays one scheduled Orchestrator run a minute (the drain measures that nothing runs between them).
Continuous dispatch changed what a run does (slot counters, the head of the retry table, a following run's
look before it lets go), so the issue asks that an idle run's Lambda seconds stay within +10% of the design
before it. Both sides run here, in the same session, on the same DynamoDB Local and tables, in turns:

- the baseline: the code of ``BENCH_IDLE_BASELINE`` (default: the commit before continuous dispatch), checked
  out into a temporary git worktree and imported from its ``shared/``;
- the current tree.

Runs are 2.2 s apart (a scheduled run comes every 60 s): the baseline lets another run take a labourer only 2 s
after its last run (its lease settle pause).

Each side runs in a fresh interpreter, as a warm Lambda container would: one TaskManager, then idle runs one
after the other, each as the handler makes it (a new Orchestrator, the Lambda's time left, following when the
code can). Wall time (what Lambda bills), CPU time and DynamoDB requests per run; medians over every run of a
side. Five labourers, as the drain's idle phase, with nothing queued.

    .venv/bin/python -m bench.idle      # writes bench/idle_results.json and bench/idle_results.md
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3

from bench.common import checked_out, say, write_results
from sosw.local.dynamodb_local import DynamoDBLocal
from sosw.local.tables import create_tables, prefixed_config

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
#: The last commit before continuous dispatch (issue 11's facade; issue 13 starts after it).
BASELINE = os.environ.get("BENCH_IDLE_BASELINE", "4cc366a")
LABOURERS = 5
ROUNDS = 3  # baseline, current, baseline, current, ...: a drift of the machine hits both sides alike
RUNS = int(os.environ.get("BENCH_IDLE_RUNS", "10"))  # measured runs per round and side
WARM_UP = 2
#: Between runs: past the baseline's lease settle pause (2 s), which a minute between scheduled runs always is.
GAP_SECONDS = 2.2
ARN = "arn:aws:lambda:us-east-1:000000000000:function:idle_{}"

#: The child: imports whichever ``sosw`` is first on its path, and prints one JSON line of figures.
CHILD = r"""
import inspect, json, sys, time
from collections import Counter
from sosw.managers.task import TaskManager
from sosw.orchestrator import Orchestrator

config, runs, warm_up, gap = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
tm = TaskManager(config)
requests = Counter()
tm.dynamo_db_client.meta.events.register("before-send.dynamodb", lambda **kw: requests.update(["n"]))
follows = "follow" in inspect.signature(Orchestrator.run).parameters
out = []
for i in range(warm_up + runs):
    time.sleep(gap)
    before, wall, cpu = requests["n"], time.perf_counter(), time.process_time()
    orchestrator = Orchestrator(tm)
    report = orchestrator.run(lambda: 290.0, follow=True) if follows else orchestrator.run(lambda: 290.0)
    errors = {k: v.error or v.skipped_reason for k, v in report.labourers.items() if v.error or v.skipped_reason}
    if report.invoked or errors or len(report.labourers) != len(config["labourers"]):
        raise SystemExit(f"not an idle run: invoked {report.invoked}, {errors or report.labourers}")
    if i >= warm_up:
        out.append({"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
                    "requests": requests["n"] - before})
print(json.dumps(out))
"""


def _side(shared: Path, config: dict[str, Any], endpoint: str) -> list[dict[str, float]]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "PYTHONPATH"))},
        "PYTHONPATH": str(shared),
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "AWS_ENDPOINT_URL_CLOUDWATCH": "http://127.0.0.1:9",  # no labourer reads health metrics; never reached
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_SERVICE_NAME": "bench-idle",
        "POWERTOOLS_METRICS_NAMESPACE": "bench",
    }
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(config), str(RUNS), str(WARM_UP), str(GAP_SECONDS)],
        env=env,
        cwd=tempfile.gettempdir(),  # not the checkout: its own shared/ must not shadow the side's
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode:
        raise RuntimeError(f"idle runs from {shared} failed:\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]  # EMF metrics print JSON objects
    return json.loads(lines[-1])


def _summary(runs: list[dict[str, float]]) -> dict[str, float]:
    wall = statistics.median(r["wall"] for r in runs)
    return {
        "runs": len(runs),
        "wall_median": wall,
        "cpu_median": statistics.median(r["cpu"] for r in runs),
        "requests_median": statistics.median(r["requests"] for r in runs),
        "lambda_seconds_per_hour": wall * 60,  # one scheduled run a minute
    }


def render(results: dict[str, Any]) -> str:
    base, now = results["baseline"], results["current"]
    rows = [
        ("wall time per idle run, median (what Lambda bills)", "wall_median", "{:.3f} s"),
        ("CPU time per idle run, median", "cpu_median", "{:.3f} s"),
        ("DynamoDB requests per idle run, median", "requests_median", "{:g}"),
        ("Orchestrator Lambda seconds per hour (a run a minute)", "lambda_seconds_per_hour", "{:.1f} s"),
    ]
    lines = [
        f"Idle Orchestrator runs, {LABOURERS} labourers, nothing queued: baseline `{results['baseline_ref']}` "
        f"(before continuous dispatch) against the current tree, {ROUNDS} rounds of {RUNS} runs each, in turns "
        f"({results['date']}, {results['cores']} cores).",
        "",
        "| figure | before | now | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for label, key, fmt in rows:
        ratio = now[key] / base[key] if base[key] else float("nan")
        lines.append(f"| {label} | {fmt.format(base[key])} | {fmt.format(now[key])} | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    labourers = {f"idle_{i}": {"arn": ARN.format(i), "max_simultaneous_invocations": 10} for i in range(LABOURERS)}
    with checked_out(BASELINE) as baseline_shared, DynamoDBLocal() as ddb:
        client = boto3.client(
            "dynamodb",
            endpoint_url=ddb.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
        )
        config = prefixed_config("idle_", {"labourers": labourers})
        create_tables(client, config)
        sides: dict[str, list[dict[str, float]]] = {"baseline": [], "current": []}
        trees = {"baseline": baseline_shared, "current": ROOT / "shared"}
        for round_ in range(1, ROUNDS + 1):
            for side, shared in trees.items():
                runs = _side(shared, config, ddb.endpoint_url)
                sides[side] += runs
                say(
                    f"idle round {round_}, {side}: wall median {statistics.median(r['wall'] for r in runs):.3f} s,"
                    f" {statistics.median(r['requests'] for r in runs):g} requests a run"
                )
    results = {
        "baseline_ref": BASELINE,
        "date": subprocess.run(["date", "-u", "+%Y-%m-%d %H:%M UTC"], capture_output=True, text=True).stdout.strip(),
        "cores": os.cpu_count(),
        "baseline": _summary(sides["baseline"]),
        "current": _summary(sides["current"]),
    }
    write_results("idle", results, render(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
