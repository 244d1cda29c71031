"""Job figures for ``make bench`` (``python -m bench.jobs``): what submitting and following a job costs.

- **Submit**: a sosw job of 100,000 tasks (a 10 x 10 x 10 tree of sections, stores and products, products
  isolated, times ``last_100_days`` with ``isolate_days``) through ``create_job`` on DynamoDB Local:
  tasks per second, the process's peak memory before and after, DynamoDB requests and write units per task.
- **Tracking**: 1,000 plain tasks and a job of 1,000 tasks, claimed, then closed through the same paths
  (the worker's completion that closes at once; the Scavenger's close of a dead task): what the job adds
  per close, in requests and write units (AWS's billing rule: a transactional write counts twice), and
  what one tracker pass costs.
- **Preview memory**: the peak memory (max RSS) of ``sosw job submit --dry-run`` at 10k, 100k and 1M tasks,
  each in a fresh process, its output thrown away.

Every phase runs in its own interpreter, metered by botocore hooks installed before any client exists
(``bench.common.DynamoMeter``). ``BENCH_SCALE`` scales the submit and tracking sizes (not the preview's).
Writes bench/jobs_results.json and bench/jobs_results.md.
"""

from __future__ import annotations

import datetime
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import write_results

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
SCHEMA = {"chunkable_attrs": [["section", {}], ["store", {}], ["product", {}]]}
TODAY = "2024-05-15"
SUBMIT_N = 100_000
TRACK_N = 1_000
PREVIEW_SIZES = (10_000, 100_000, 1_000_000)


def days_job(n: int) -> dict[str, Any]:
    """1,000 tasks a day (10 sections x 10 stores x 10 products, products isolated) times ``n / 1000`` days."""
    assert n % 1000 == 0
    sections = {
        f"sec{i}": {"stores": {f"st{i}_{j}": {"products": [f"p{i}_{j}_{k}" for k in range(10)]} for j in range(10)}}
        for i in range(10)
    }
    return {
        "lambda_name": "bench_jobs",
        "sections": sections,
        "isolate_products": True,
        "period": f"last_{n // 1000}_days",
        "isolate_days": True,
    }


def _config(prefix: str) -> dict[str, Any]:
    from sosw.local.tables import prefixed_config

    labourers = {"bench_jobs": {"max_simultaneous_invocations": 100_000, "duration": 900, "cooldown": 300}}
    return prefixed_config(prefix, {"labourers": labourers, "job_schema": SCHEMA})


def _snapshot(meter: Any) -> dict[str, Any]:
    return {"requests": dict(meter.requests), "wcu_aws": meter.wcu_aws, "rcu": meter.rcu}


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    ops = set(after["requests"]) | set(before["requests"])
    requests = {op: after["requests"].get(op, 0) - before["requests"].get(op, 0) for op in ops}
    return {
        "requests": {k: v for k, v in sorted(requests.items()) if v},
        "total_requests": sum(requests.values()),
        "wcu_aws": round(after["wcu_aws"] - before["wcu_aws"], 2),
        "rcu": round(after["rcu"] - before["rcu"], 2),
    }


# ---------------------------------------------------------------------------------------- phases (subprocesses)


def phase_submit(n: int) -> dict[str, Any]:
    from bench.common import DynamoMeter

    meter = DynamoMeter()
    meter.install_on_default_session()
    from sosw import aws
    from sosw.local.tables import create_tables
    from sosw.managers.task import TaskManager

    config = _config(f"js{os.getpid()}_")
    create_tables(aws.dynamodb_client(), config)
    tm = TaskManager(config)
    job = days_job(n)
    before, rss_before = _snapshot(meter), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = tm.create_job(None, job, job_id="bench-submit", today=datetime.date.fromisoformat(TODAY))
    seconds = time.perf_counter() - started
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cost = _delta(_snapshot(meter), before)
    stored = sum(
        page["Count"]
        for page in aws.dynamodb_client()
        .get_paginator("scan")
        .paginate(TableName=config["dynamo_db_config"]["table_name"], Select="COUNT")
    )
    return {
        "n": n,
        "stored": stored,
        "ok": stored == n and result["total"] == n and result["state"] == "running",
        "seconds": round(seconds, 1),
        "tasks_per_second": round(n / seconds),
        "peak_rss_mib_before": round(rss_before / 1024, 1),
        "peak_rss_mib_after": round(rss_after / 1024, 1),
        "requests_per_task": round(cost["total_requests"] / n, 3),
        "wcu_aws_per_task": round(cost["wcu_aws"] / n, 2),
        "cost": cost,
    }


def phase_tracking(n: int) -> dict[str, Any]:
    from bench.common import DynamoMeter

    meter = DynamoMeter()
    meter.install_on_default_session()
    from sosw import aws
    from sosw.local.tables import create_tables
    from sosw.managers.task import WORKER_EVENT_FIELDS, TaskManager

    config = _config(f"jt{os.getpid()}_")
    create_tables(aws.dynamodb_client(), config)
    tm = TaskManager(config)
    labourer = tm.register_labourers()[0]
    plain_ids = tm.create_tasks(labourer, [{"i": i} for i in range(n)])
    tm.create_job(labourer, [{"i": i} for i in range(n)], job_id="bench-track", tolerated_failure_percentage=100)
    job_ids = [f"bench-track.{i}" for i in range(n)]
    claimed = {
        task_id: tm.mark_task_invoked(labourer, tm.get_task_by_id(task_id)) for task_id in [*plain_ids, *job_ids]
    }

    def close(ids: list[str]) -> dict[str, Any]:
        """Nine in ten completed by the worker's copy (closed at once), one in ten closed dead by the Scavenger."""
        before = _snapshot(meter)
        for index, task_id in enumerate(ids):
            task = claimed[task_id]
            if index % 10 == 9:
                assert tm.archive_task({**task, "last_error": {"type": "Bench"}}, completed=False)
            else:
                event = tm.worker_event(task)
                copy = {k: event[k] for k in WORKER_EVENT_FIELDS if k in event} | {"payload": task["payload"]}
                assert tm.complete_and_archive_task(copy, attempt=task["attempts"])
        return _delta(_snapshot(meter), before)

    plain, job = close(plain_ids), close(job_ids)
    before = _snapshot(meter)
    tm.jobs.tracker.events_client = _NoEvents()
    stats = tm.track_jobs()
    tracker = _delta(_snapshot(meter), before)
    counts = tm.get_job("bench-track")
    return {
        "n": n,
        "ok": counts["completed"] == n - n // 10 and counts["dead"] == n // 10 and stats["events_published"] == 1,
        "plain": plain,
        "job": job,
        "added_requests_per_task": round((job["total_requests"] - plain["total_requests"]) / n, 3),
        "added_wcu_aws_per_task": round((job["wcu_aws"] - plain["wcu_aws"]) / n, 2),
        "tracker_pass": tracker,
    }


class _NoEvents:
    """EventBridge is not metered here: the end event is taken and dropped."""

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "bench"}]}


# ---------------------------------------------------------------------------------------------------- driver


def _in_subprocess(phase: str, n: int, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.jobs", phase, str(n)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        return {"ok": False, "error": out.stderr.strip().splitlines()[-1:] or ["no output"]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def preview_memory(sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """``sosw job submit --dry-run`` in a fresh process per size: its max RSS (wait4) and its time."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        schema = Path(tmp) / "schema.json"
        schema.write_text(json.dumps(SCHEMA))
        for n in (1000, *sizes):
            job = Path(tmp) / f"job{n}.json"
            job.write_text(json.dumps(days_job(n)))
            command = [str(ROOT / ".venv" / "bin" / "sosw"), "job", "submit", str(job), "--job-schema", str(schema)]
            command += ["--today", TODAY, "--dry-run"]
            started = time.perf_counter()
            with open(os.devnull, "w") as devnull:
                process = subprocess.Popen(command, stdout=devnull, stderr=subprocess.PIPE)
                _, status, usage = os.wait4(process.pid, 0)
            rows.append(
                {
                    "n": n,
                    "ok": os.waitstatus_to_exitcode(status) == 0,
                    "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
                    "seconds": round(time.perf_counter() - started, 1),
                }
            )
    return rows


def render(results: dict[str, Any]) -> str:
    s, t = results["submit"], results["tracking"]
    lines = [
        f"# Job figures ({results['date']}, {results['machine']['cores']} cores, scale {results['scale']})",
        "",
        "| figure | value | target |",
        "| --- | --- | --- |",
    ]
    if s.get("ok"):
        lines += [
            f"| a {s['n']:,}-task sosw job submitted and chunked (create_job, DynamoDB Local) | "
            f"{s['tasks_per_second']:,} tasks/s ({s['seconds']} s) | |",
            f"| peak memory of that submit (max RSS, before -> after) | {s['peak_rss_mib_before']} -> "
            f"{s['peak_rss_mib_after']} MiB | flat |",
            f"| its DynamoDB requests per task (conditional transactions of 33 tasks, cursor updates) | "
            f"{s['requests_per_task']} | |",
        ]
    else:
        lines.append(f"| submit | FAILED: {s.get('error')} | |")
    if t.get("ok"):
        lines += [
            f"| requests per close that job tracking adds ({t['n']:,} job tasks vs {t['n']:,} plain) | "
            f"{t['added_requests_per_task']} | 0 |",
            f"| write units per close that job tracking adds (AWS rule) | {t['added_wcu_aws_per_task']} | <= 2 |",
            f"| one tracker pass over the finished job | {t['tracker_pass']['total_requests']} requests "
            f"({t['tracker_pass']['requests']}) | per job, not per task |",
        ]
    else:
        lines.append(f"| tracking | FAILED: {t.get('error')} | |")
    for row in results["preview"]:
        lines.append(
            f"| `sosw job submit --dry-run`, {row['n']:,} tasks: peak memory (max RSS) | {row['peak_rss_mib']} MiB "
            f"({row['seconds']} s) | flat |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    from sosw.local.dynamodb_local import DynamoDBLocal

    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        POWERTOOLS_METRICS_DISABLED="true",
        POWERTOOLS_LOG_LEVEL="ERROR",
    )
    results: dict[str, Any] = {
        "command": "make bench (bench.jobs)",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cores": os.cpu_count(), "load_start": round(os.getloadavg()[0], 2)},
        "scale": SCALE,
    }
    submit_n = max(1000, round(SUBMIT_N * SCALE / 1000) * 1000)
    track_n = max(100, round(TRACK_N * SCALE / 10) * 10)
    with DynamoDBLocal() as ddb:
        env["AWS_ENDPOINT_URL_DYNAMODB"] = ddb.endpoint_url
        print(f"jobs: submit {submit_n:,} tasks ...", flush=True)
        results["submit"] = _in_subprocess("submit", submit_n, env)
        print(f"jobs: tracking, {track_n:,} closes each ...", flush=True)
        results["tracking"] = _in_subprocess("tracking", track_n, env)
    print("jobs: preview memory ...", flush=True)
    results["preview"] = preview_memory(PREVIEW_SIZES)
    results["machine"]["load_end"] = round(os.getloadavg()[0], 2)
    write_results("jobs", results, render(results))
    ok = results["submit"].get("ok") and results["tracking"].get("ok") and all(r["ok"] for r in results["preview"])
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) == 3:
        phase = {"submit": phase_submit, "tracking": phase_tracking}[sys.argv[1]]
        print(json.dumps(phase(int(sys.argv[2]))))
    else:
        sys.exit(main())
