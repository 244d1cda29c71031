"""Simulated workers behind a real HTTP Invoke endpoint, for the reliability scenarios and the hot-labourer benchmark.

Apart from the harness (``tests/reliability/harness.py``) because it imports only what every release of the
package has (the TaskManager): ``bench/hot.py`` runs it on the previous release's ``shared/`` too.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sosw.managers.task import TaskManager

_INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations")


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
