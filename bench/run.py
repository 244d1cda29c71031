"""The benchmark of issue 6 (``make bench``): our stack against sosw 0.7.51, side by side, in one run.

One DynamoDB Local for the whole run, one loopback Lambda endpoint (its own process), fresh tables (from
``sosw.schema``, with a prefix per run) for every run of every workload. Each run is one subprocess: ours
in .venv (``bench.ours_runner``), sosw 0.7.51 in .cache/bench-sosw-venv (``bench.sosw_runner``). The end
state is checked here, by reading the tables and the endpoint's record; a failed check marks the run failed.

Environment:
  BENCH_SCALE=0.1          shrink every N (quick run); default 1
  BENCH_REPEAT=3           repeat each lifecycle run (figures are medians); default 1
  BENCH_LIFECYCLE=1000:20  only these lifecycle configurations (N:invoke delay in ms, comma-separated)
  BENCH_SOSW_PYTHON=...    sosw 0.7.51's interpreter; default .cache/bench-sosw-venv/bin/python
  BENCH_STACKS=ours        only these stacks (comma-separated: ours,sosw); default both
  BENCH_WORKLOADS=retry    only these workloads (comma-separated: lifecycle,retry,scaling,drain); default all;
                           drain alone replaces only the drain's part of bench/results.json

Writes bench/results.json, bench/results.md and bench/results.png (the chart); per-run specs and raw results go
to bench/out/. The drain (issue 13, bench/drain.py) runs the whole local stack in its own process, on the same
DynamoDB Local.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3

from bench.chart import render_chart
from bench.common import Endpoint, Tables, scan_count
from bench.report import drain_summary, render_markdown, summarize
from bench.serving import start_server, stop_server
from sosw.local.dynamodb_local import DynamoDBLocal
from sosw.local.tables import create_tables, prefixed_config
from sosw.schema import table_schemas

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
OUT = BENCH / "out"
SOSW_PYTHON = Path(os.environ.get("BENCH_SOSW_PYTHON", ROOT / ".cache" / "bench-sosw-venv" / "bin" / "python"))

SCALE = float(os.environ.get("BENCH_SCALE", "1"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "1"))
STACKS = [s.strip() for s in os.environ.get("BENCH_STACKS", "ours,sosw").split(",") if s.strip()]
WORKLOADS = [
    w.strip() for w in os.environ.get("BENCH_WORKLOADS", "lifecycle,retry,scaling,drain").split(",") if w.strip()
]
#: The workloads that compare the two stacks (the drain runs ours alone, on the local stack).
VERSUS = ("lifecycle", "retry", "scaling")

#: (N, invoke delay in ms) of the lifecycle workload; BENCH_LIFECYCLE=1000:20 runs only those ("N:ms,N:ms").
LIFECYCLE = [
    (int(n), int(ms))
    for n, ms in (c.split(":") for c in os.environ.get("BENCH_LIFECYCLE", "1000:0,1000:20,4000:0,4000:20").split(","))
]
RETRY_N = 200
MAX_ATTEMPTS = 3
SCALING_LEVELS = [1000, 10_000, 100_000]
SCALING_LIMIT = 10
WARMUP_N = 200


def scaled(n: int, minimum: int = 20) -> int:
    return max(minimum, round(n * SCALE))


def say(message: str) -> None:
    print(message, flush=True)


class Bench:
    def __init__(self, ddb_url: str, lambda_url: str, cpu_pids: dict[str, int]) -> None:
        self.ddb_url = ddb_url
        self.cpu_pids = cpu_pids
        self.endpoint = Endpoint(lambda_url)
        self.client = boto3.client("dynamodb", endpoint_url=ddb_url)
        self.counter = 0
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        self.env.update(
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_REGION="us-east-1",
            AWS_ENDPOINT_URL_DYNAMODB=ddb_url,
            AWS_ENDPOINT_URL_LAMBDA=lambda_url,
            POWERTOOLS_METRICS_DISABLED="true",
            POWERTOOLS_LOG_LEVEL="ERROR",
            PYTHONUNBUFFERED="1",
        )

    # ------------------------------------------------------------------ one run

    def _tables(self, config: dict[str, Any]) -> dict[str, str]:
        schemas = table_schemas(config)
        return {
            "tasks": schemas["tasks"].name,
            "index": schemas["tasks"].indexes[0].name,
            "retry": schemas["retry"].name,
            "closed": schemas["closed"].name,
            "closed_index": schemas["closed"].indexes[0].name,
        }

    def run(self, stack: str, workload: str, labourer: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
        """Fresh tables, the labourer's function at the endpoint, one runner subprocess; returns its result."""
        self.counter += 1
        labourer_id = f"{stack}_{workload}_{self.counter}"
        prefix = f"b{self.counter}_"
        extra = {"orchestrator_lease_settle_seconds": 0} if stack == "ours" else {}
        config = prefixed_config(prefix, {"labourers": {labourer_id: labourer}, **extra})
        create_tables(self.client, config)
        self.endpoint.register(labourer_id, spec.get("delay_ms", 0), timeout=spec.get("timeout_setting", 900))
        spec = {
            **spec,
            "workload": workload,
            "labourer_id": labourer_id,
            "config": config,
            "tables": self._tables(config),
            "lambda_url": self.endpoint.url,
            "cpu_pids": self.cpu_pids,
        }
        OUT.mkdir(exist_ok=True)
        spec_path, result_path = OUT / f"{labourer_id}.spec.json", OUT / f"{labourer_id}.result.json"
        spec_path.write_text(json.dumps(spec, indent=1))
        result_path.unlink(missing_ok=True)
        python = sys.executable if stack == "ours" else str(SOSW_PYTHON)
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                [python, "-m", f"bench.{stack}_runner", str(spec_path), str(result_path)],
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.PIPE,
                text=True,
            )
            watchdog = threading.Timer(spec.get("process_timeout", 1800), process.kill)
            watchdog.start()
            assert process.stdout is not None
            for line in process.stdout:
                if not line.startswith('{"_aws"'):  # our stack prints its EMF metrics to stdout, as in Lambda
                    print(line, end="", flush=True)
            process.wait()
            watchdog.cancel()
            result = json.loads(result_path.read_text())
        except (OSError, ValueError) as exc:
            result = {"ok": False, "error": f"runner: {type(exc).__name__}: {exc}"}
        result["process_seconds"] = time.monotonic() - started
        result["labourer_id"] = labourer_id
        result["spec"] = spec
        return result

    def drain(self) -> dict[str, Any]:
        """The drain workload (bench/drain.py) in its own process: the local stack on this DynamoDB Local."""
        OUT.mkdir(exist_ok=True)
        result_path = OUT / "drain.result.json"
        result_path.unlink(missing_ok=True)
        env = {k: v for k, v in self.env.items() if not k.startswith("AWS_ENDPOINT_URL")}
        try:
            subprocess.run(
                [sys.executable, "-m", "bench.drain", "--dynamodb-url", self.ddb_url, "--out", str(result_path)],
                cwd=ROOT,
                env=env,
                check=False,
                timeout=3600,
            )
            return json.loads(result_path.read_text())
        except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
            return {"ok": False, "error": f"drain: {type(exc).__name__}: {exc}"}

    def drop(self, spec: dict[str, Any]) -> None:
        for schema in table_schemas(spec["config"]).values():
            self.client.delete_table(TableName=schema.name)

    # ------------------------------------------------------------------ checks (harness reads, never metered)

    def verify_closed(self, result: dict[str, Any], n: int, completed: bool, attempts: int) -> list[str]:
        spec = result["spec"]
        tables = Tables(spec["tables"])
        lid = result["labourer_id"]
        problems = []
        state = tables.state(lid)
        expected = (0, 0, n, 0) if completed else (0, 0, 0, n)
        if state != expected:
            problems.append(f"(open, waiting, completed, dead) = {state}, expected {expected}")
        for role in ("tasks", "retry"):
            left = scan_count(self.client, spec["tables"][role])
            if left:
                problems.append(f"{left} item(s) left in the {role} table")
        closed = scan_count(self.client, spec["tables"]["closed"])
        if closed != n:
            problems.append(f"{closed} closed tasks, expected {n}")
        if completed:
            with_completion = 0
            for page in self.client.get_paginator("scan").paginate(
                TableName=spec["tables"]["closed"], Select="COUNT", FilterExpression="attribute_exists(completed_at)"
            ):
                with_completion += page["Count"]
            if with_completion != n:
                problems.append(f"{with_completion} closed tasks have completed_at, expected {n}")
        deliveries = Counter(i["task_id"] for i in self.endpoint.invocations(lid))
        if len(deliveries) != n or set(deliveries.values()) != {attempts}:
            spread = Counter(deliveries.values())
            problems.append(
                f"invocations per task {dict(spread)} over {len(deliveries)} tasks, expected {attempts} x {n}"
            )
        return problems

    def verify_scaling(self, result: dict[str, Any]) -> list[str]:
        spec = result["spec"]
        problems = [f"{s['queued']}: {p}" for s in result.get("steps", []) for p in s["problems"]]
        levels = spec["levels"]
        expected_open = levels[-1] - spec["limit"]
        expected_closed = spec["limit"] * (len(levels) + 1)  # a first cycle, not recorded, then one per level
        open_ = scan_count(self.client, spec["tables"]["tasks"])
        closed = scan_count(self.client, spec["tables"]["closed"])
        if (open_, closed) != (expected_open, expected_closed):
            problems.append(f"(open, closed) = {(open_, closed)}, expected {(expected_open, expected_closed)}")
        return problems

    # ------------------------------------------------------------------ workloads

    def lifecycle(self, stack: str, n: int, delay_ms: int, repeat: int, record: bool = True) -> dict[str, Any]:
        tag = f"{stack} lifecycle N={n} delay={delay_ms}ms" + (f" #{repeat + 1}" if REPEAT > 1 else "")
        say(f"== {tag}" + ("" if record else " (warm-up, not recorded)"))
        spec = {"n": n, "delay_ms": delay_ms, "limit": n}
        result = self.run(stack, "lifecycle", {"max_simultaneous_invocations": n}, spec)
        problems = self.verify_closed(result, n, completed=True, attempts=1) if result["ok"] else []
        self.drop(result["spec"])
        record_ = {
            "stack": stack,
            "n": n,
            "delay_ms": delay_ms,
            "repeat": repeat,
            "ok": result["ok"] and not problems and not result.get("notes"),
            "error": result.get("error"),
            "problems": problems + result.get("notes", []),
            "phases": result.get("phases", {}),
            "left_after_reports": result.get("left_after_reports"),
        }
        verdict = "OK" if record_["ok"] else f"FAILED: {record_['error'] or record_['problems']}"
        say(f"   {tag}: end state {verdict}")
        return record_

    def retry(self, stack: str, n: int) -> dict[str, Any]:
        say(f"== {stack} retry N={n} (workers never report; duration 1 s, cooldown 1 s, max_duration 1 s)")
        settings = {"max_simultaneous_invocations": n, "max_duration": 1}
        spec: dict[str, Any] = {"n": n, "delay_ms": 0, "tick": 1.0, "timeout": 300, "timeout_setting": 1}
        if stack == "ours":
            settings.update(duration=1, cooldown=1, max_attempts=MAX_ATTEMPTS)
        else:
            spec.update(duration=1, cooldown=1, max_duration=1, limit=n)
        result = self.run(stack, "retry", settings, spec)
        problems = self.verify_closed(result, n, completed=False, attempts=MAX_ATTEMPTS) if result["ok"] else []
        self.drop(result["spec"])
        record = {
            "stack": stack,
            "n": n,
            "ok": result["ok"] and not problems,
            "error": result.get("error"),
            "problems": problems,
            "phases": result.get("phases", {}),
            "loops": result.get("loops"),
            "idle_loops": result.get("idle_loops"),
            "wall_seconds": result.get("wall_seconds"),
        }
        say(f"   {stack} retry: end state {'OK' if record['ok'] else 'FAILED: ' + str(record['error'] or problems)}")
        return record

    def scaling(self, stack: str, levels: list[int]) -> dict[str, Any]:
        say(f"== {stack} scaling: one Orchestrator run and one Scavenger run at {levels} queued")
        spec = {"levels": levels, "limit": SCALING_LIMIT, "delay_ms": 0}
        result = self.run(stack, "scaling", {"max_simultaneous_invocations": SCALING_LIMIT}, spec)
        problems = self.verify_scaling(result) if result["ok"] else []
        self.drop(result["spec"])
        record = {
            "stack": stack,
            "ok": result["ok"] and not problems,
            "error": result.get("error"),
            "problems": problems,
            "steps": result.get("steps", []),
        }
        say(f"   {stack} scaling: end state {'OK' if record['ok'] else 'FAILED: ' + str(record['error'] or problems)}")
        return record


def machine() -> dict[str, Any]:
    sosw_version = "not run"
    if "sosw" in STACKS:
        probe = subprocess.run(
            [str(SOSW_PYTHON), "-c", "import importlib.metadata as m; print(m.version('sosw'))"],
            capture_output=True,
            text=True,
            check=False,
        )
        sosw_version = probe.stdout.strip() or probe.stderr.strip()[-200:]
    return {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sosw_baseline": sosw_version,
        "boto3": boto3.__version__,
        "load_start": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1")
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        os.environ.pop(key, None)
    versus = [w for w in WORKLOADS if w in VERSUS]
    if versus and "sosw" in STACKS and not SOSW_PYTHON.is_file():
        say(f"sosw 0.7.51's virtualenv is missing ({SOSW_PYTHON}): run `make bench`, which creates it")
        return 1
    started = time.monotonic()
    info = machine()
    say(
        f"bench: {info['cores']} cores, Python {info['python']}, sosw baseline {info['sosw_baseline']}, "
        f"scale {SCALE}, repeat {REPEAT}, stacks {STACKS}"
    )
    results: dict[str, Any] = {
        "command": "make bench",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": info,
        "scale": SCALE,
        "repeat": REPEAT,
        "lifecycle": [],
        "retry": [],
        "scaling": [],
    }
    endpoint, lambda_url = start_server("bench.invoke_endpoint")
    try:
        with DynamoDBLocal() as ddb:
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = ddb.endpoint_url  # the harness's own reads
            pids = {"dynamodb_local": ddb._process.pid if ddb._process else 0, "lambda_endpoint": endpoint.pid}
            bench = Bench(ddb.endpoint_url, lambda_url, pids)
            say(f"DynamoDB Local on {ddb.endpoint_url}, Lambda endpoint on {lambda_url}")
            for stack in STACKS if versus else []:  # the JVM's JIT warms up on neither stack's clock
                bench.lifecycle(stack, scaled(WARMUP_N), 0, 0, record=False)
            for n, delay in LIFECYCLE if "lifecycle" in WORKLOADS else []:
                for repeat in range(REPEAT):
                    for stack in STACKS:  # interleaved, so that drift hits both alike
                        results["lifecycle"].append(bench.lifecycle(stack, scaled(n), delay, repeat))
            for stack in STACKS if "retry" in WORKLOADS else []:
                results["retry"].append(bench.retry(stack, scaled(RETRY_N)))
            levels = [scaled(level, minimum=100) for level in SCALING_LEVELS]
            for stack in STACKS if "scaling" in WORKLOADS else []:
                results["scaling"].append(bench.scaling(stack, levels))
            if "drain" in WORKLOADS:
                say("== drain (issue 13): the local stack at real speed")
                results["drain"] = bench.drain()
                if not results["drain"].get("error"):
                    results["drain"]["summary"] = drain_summary(results["drain"])
    finally:
        stop_server(endpoint)
    results["wall_seconds"] = round(time.monotonic() - started, 1)
    info["load_end"] = round(os.getloadavg()[0], 2)
    if not versus and (BENCH / "results.json").is_file():
        # The drain alone: the comparison's figures stay those of the last full run.
        results = {**json.loads((BENCH / "results.json").read_text()), "drain": results.get("drain")}
    results["summary"] = summarize(results)
    (BENCH / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    markdown = render_markdown(results)
    (BENCH / "results.md").write_text(markdown)
    render_chart(results, BENCH / "results.png")
    say("")
    say(markdown)
    say(f"wrote bench/results.json, bench/results.md and bench/results.png in {results['wall_seconds']:.0f} s")
    failed = [r for key in VERSUS for r in results[key] if not r["ok"]]
    if "drain" in WORKLOADS and not (results.get("drain") or {}).get("ok"):
        failed.append(results.get("drain"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
