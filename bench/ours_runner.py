"""Drives our stack through one workload (``python -m bench.ours_runner SPEC.json RESULT.json``, in .venv).

As the Lambda handlers do: each Orchestrator, Scavenger and WorkerAssistant call gets a TaskManager on the
container's shared clients (``sosw.runtime``). Workers are the real ``sosw.worker.Worker``: what it would send
the WorkerAssistant (``start_task``, the duplicate-delivery guard, metered on its own; then its completion
report) is captured and applied through ``WorkerAssistant.handle``.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from typing import Any

from bench.common import DynamoMeter, WorkloadFailed, runner_main

METER = DynamoMeter()
METER.install_on_default_session()  # before any client exists

from sosw import aws  # noqa: E402 - the meter must be installed before the package creates clients
from sosw.managers.task import TaskManager  # noqa: E402
from sosw.orchestrator import Orchestrator  # noqa: E402
from sosw.scavenger import Scavenger  # noqa: E402
from sosw.worker import Worker  # noqa: E402
from sosw.worker_assistant import WorkerAssistant  # noqa: E402


class CapturingLambda:
    """The Worker's Lambda client: keeps what it would send the WorkerAssistant; a start is answered accepted."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def invoke(self, FunctionName: str, InvocationType: str, Payload: str) -> dict[str, Any]:
        self.sent.append(json.loads(Payload))
        if InvocationType == "RequestResponse":
            return {"StatusCode": 200, "Payload": io.BytesIO(b'{"outcome": "accepted"}')}
        return {"StatusCode": 202}


class BenchWorker(Worker):
    def process(self, payload: dict[str, Any]) -> Any:
        return {"done": True}


class OursStack:
    name = "ours"

    def __init__(self, spec: dict[str, Any]) -> None:
        self.config = spec["config"]
        self.labourer_id = spec["labourer_id"]
        self.dynamodb = aws.dynamodb_client()
        self.lambda_ = aws.lambda_client()
        self._worker_lock = threading.Lock()
        self._capture = CapturingLambda()
        self._worker = BenchWorker(lambda_client=self._capture)

    def _tm(self) -> TaskManager:
        return TaskManager(self.config, dynamodb_client=self.dynamodb, lambda_client=self.lambda_)

    def create(self, n: int) -> None:
        tm = self._tm()
        tm.create_tasks(tm.get_labourer(self.labourer_id), [{"i": i} for i in range(n)])

    def orchestrate_once(self) -> None:
        report = Orchestrator(self._tm()).run()
        errors = {k: v.error for k, v in report.labourers.items() if v.error}
        if errors:
            raise WorkloadFailed(f"orchestrator: {errors}")

    def worker_reports(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        with self._worker_lock:
            self._capture.sent.clear()
            self._worker.handler(event)
            return list(self._capture.sent)

    def report(self, report: dict[str, Any]) -> str:
        return WorkerAssistant(self._tm()).handle(report)["outcome"]

    def scavenge_once(self) -> None:
        report = Scavenger(self._tm()).run()
        if report.errors:
            raise WorkloadFailed(f"scavenger: {report.errors}")


if __name__ == "__main__":
    logging.getLogger("urllib3").setLevel(logging.ERROR)  # "connection pool is full" with 16 threads
    runner_main(OursStack, METER)
