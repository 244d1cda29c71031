"""The console's bounded reads (``make bench``, ``BENCH_WORKLOADS=console``): DynamoDB requests per page render
at 100 and at 100,000 queued tasks.

Two sets of the stack's tables on one DynamoDB Local, the same in all but the queue's length: one labourer
with 100 (or 100,000) queued tasks, plus in both a few dead tasks, a waiting one and a job. The console's
app (the same one ``sosw console`` serves, driven in-process by Starlette's TestClient) reads through the
counting proxy (``bench.ddb_proxy``), so every request of a render is counted where DynamoDB sees it.
CloudWatch (the completions chart) is moto's server on loopback. ``BENCH_SCALE`` scales the large queue
(0.1: 10,000 tasks). Writes bench/console_results.json and bench/console_results.md.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SCALE = float(os.environ.get("BENCH_SCALE", "1"))
SMALL, LARGE = 100, int(100_000 * SCALE)
RENDERS = 3
LABOURERS = {
    "bench_console": {"max_simultaneous_invocations": 10, "duration": 60, "cooldown": 30, "max_duration": 60},
    "bench_other": {"max_simultaneous_invocations": 2, "duration": 60, "cooldown": 30, "max_duration": 60},
}


def _fill(tm: Any, queued: int) -> dict[str, str]:
    """The same tables but for the queue's length; returns the ids the pages open."""
    lab = tm.get_labourer("bench_console")
    started = time.monotonic()
    done = 0
    while done < queued:  # in chunks, so the progress shows on a long fill
        chunk = min(10_000, queued - done)
        tm.create_tasks(lab, [{"n": done + i, "color": "red" if i % 2 else "blue"} for i in range(chunk)])
        done += chunk
        print(f"  {done:,} queued ({time.monotonic() - started:.0f} s)", flush=True)
    dead = []
    for i in range(5):
        task = tm.create_task(tm.get_labourer("bench_other"), payload={"i": i})
        tm.archive_task({**task, "last_error": {"type": "Boom", "message": f"broke {i % 2}"}}, completed=False)
        dead.append(task["task_id"])
    tm.create_delayed_task(lab, {"later": True}, 3600)
    tm.create_job("bench_other", [{"k": i} for i in range(20)], job_id="bench-job")
    head = tm.get_next_for_labourer(lab, cnt=1, only_ids=True)[0]
    return {"task": str(head), "dead": dead[0], "job": "bench-job"}


def _pages(ids: dict[str, str]) -> dict[str, str]:
    return {
        "overview": "/",
        "tasks: queued": "/tasks?state=queued&labourer=bench_console",
        "tasks: queued, payload color=red": (
            "/tasks?state=queued&labourer=bench_console&payload_key=color&payload_value=red"
        ),
        "tasks: dead": "/tasks?state=dead&labourer=bench_other",
        "task detail (queued)": f"/tasks/{ids['task']}",
        "task detail (dead)": f"/tasks/{ids['dead']}",
        "jobs": "/jobs",
        "job detail": f"/jobs/{ids['job']}",
        "dead tasks by error": "/dead",
    }


def measure(proxy: Any, proxy_client: Any, config: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    from starlette.testclient import TestClient

    from sosw.console.web.app import ConsoleOptions, create_app
    from sosw.console.web.security import Guard
    from sosw.managers.task import TaskManager

    tm = TaskManager(config, dynamodb_client=proxy_client)
    app = create_app(tm, ConsoleOptions(Guard(token="bench")))
    client = TestClient(app, base_url="http://127.0.0.1:8765")
    client.cookies.set("sosw_console", "bench")
    figures: dict[str, Any] = {}
    for name, url in _pages(ids).items():
        counts, seconds, operations = [], [], Counter()
        for _ in range(RENDERS):
            before = len(proxy.records())
            started = time.perf_counter()
            response = client.get(url)
            seconds.append(time.perf_counter() - started)
            assert response.status_code == 200, (url, response.status_code, response.text[:500])
            records = proxy.records()[before:]
            counts.append(len(records))
            operations.update(r[1] for r in records)
        figures[name] = {
            "url": url,
            "requests": counts,
            "operations": {k: v // RENDERS for k, v in sorted(operations.items())},
            "median_ms": round(1000 * statistics.median(seconds), 1),
        }
    return figures


def main() -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    from bench.drain import Proxy
    from sosw.local.dynamodb_local import DynamoDBLocal, free_port
    from sosw.local.tables import create_tables, prefixed_config
    from sosw.managers.task import TaskManager

    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_SDK_UA_APP_ID="console",
    )
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request
    moto_port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=moto_port, verbose=False)
    moto.start()
    os.environ["AWS_ENDPOINT_URL_CLOUDWATCH"] = f"http://127.0.0.1:{moto_port}"
    results: dict[str, Any] = {"scale": SCALE, "sizes": [SMALL, LARGE], "renders": RENDERS, "pages": {}}
    try:
        with DynamoDBLocal() as ddb:
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = ddb.endpoint_url
            proxy = Proxy(ddb.endpoint_url)
            try:
                proxy_client = boto3.client("dynamodb", endpoint_url=proxy.url)
                for size in (SMALL, LARGE):
                    config = prefixed_config(f"con{size}_", {"labourers": LABOURERS})
                    create_tables(boto3.client("dynamodb"), config)
                    print(f"console bench: filling {size:,} queued tasks", flush=True)
                    ids = _fill(TaskManager(config), size)
                    for name, figure in measure(proxy, proxy_client, config, ids).items():
                        results["pages"].setdefault(name, {})[str(size)] = figure
            finally:
                proxy.stop()
    finally:
        moto.stop()
    (BENCH / "console_results.json").write_text(json.dumps(results, indent=1) + "\n")
    (BENCH / "console_results.md").write_text(report(results))
    print(report(results))


def report(results: dict[str, Any]) -> str:
    small, large = (str(s) for s in results["sizes"])
    lines = [
        "# The console's DynamoDB requests per page render",
        "",
        f"`make bench` (`BENCH_WORKLOADS=console`, BENCH_SCALE={results['scale']:g}): one labourer with {int(small):,} "
        f"and then {int(large):,} queued tasks on DynamoDB Local, the rest alike; each page rendered "
        f"{results['renders']} times, every request counted by the proxy in front of DynamoDB Local.",
        "",
        f"| page | requests at {int(small):,} queued | requests at {int(large):,} queued | operations | "
        f"render (median) at {int(small):,} / {int(large):,} |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, by_size in results["pages"].items():
        a, b = by_size[small], by_size[large]
        same = "" if a["requests"] == b["requests"] else " (differs)"
        ops = ", ".join(f"{k} {v}" for k, v in b["operations"].items())
        lines.append(
            f"| {name} | {'/'.join(map(str, a['requests']))} | {'/'.join(map(str, b['requests']))}{same} | {ops} | "
            f"{a['median_ms']:g} / {b['median_ms']:g} ms |"
        )
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
