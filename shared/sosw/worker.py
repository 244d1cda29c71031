"""The base class of a worker Lambda: write ``process(payload)``, the rest is done for you.

It checks with the WorkerAssistant that this delivery is the one that may run the attempt (Lambda's
asynchronous invocation is at-least-once, and an old attempt may arrive late), runs ``process``, and
reports completed (with the result and stats) or failed (with the error type and message) through
the WorkerAssistant, so the worker's role needs no DynamoDB rights. Every log line carries the
task id; each outcome is an EMF metric.

    class ResizeImages(Worker):
        def process(self, payload):
            return {"resized": resize(payload["key"])}

    handler = ResizeImages().handler

It is a sosw ``Processor`` (``sosw.app``), as sosw's Worker is: a sosw worker that overrides ``__call__`` and
calls ``super().__call__(event)`` at its end reports completed as it did with sosw, and the reports go through
``mark_task_as_completed`` / ``mark_task_as_failed`` (sosw's names, with ``self.result`` and ``self.stats``),
so a subclass that replaces one of them changes what is reported.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger

from sosw.app import Processor
from sosw.metrics import put_labourer_metric, put_labourer_metrics
from sosw.tasks.model import WORKER_EVENT_FIELDS

ASSISTANT_ENV = "SOSW_WORKER_ASSISTANT_FUNCTION"
DEFAULT_ASSISTANT = "sosw_worker_assistant"
# Above this the report leaves its copy of the task out (asynchronous Invoke payloads are limited).
MAX_TASK_IN_REPORT = 200_000


class Worker(Processor):
    DEFAULT_CONFIG = {"sosw_worker_assistant_lambda": DEFAULT_ASSISTANT}

    def __init__(
        self,
        custom_config: Mapping[str, Any] | None = None,
        *,
        lambda_client: Any = None,
        assistant_function: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._lambda = lambda_client
        super().__init__(custom_config, **kwargs)
        self.assistant_function = (
            assistant_function or os.environ.get(ASSISTANT_ENV) or self.config["sosw_worker_assistant_lambda"]
        )
        self.logger = Logger()
        #: What the handler knows of each report beyond sosw's result and stats (attempt, task copy, error).
        self._pending: dict[Any, dict[str, Any]] = {}

    @property
    def lambda_client(self) -> Any:
        if self._lambda is None:
            import boto3

            self._lambda = boto3.client("lambda")
        return self._lambda

    @lambda_client.setter
    def lambda_client(self, client: Any) -> None:
        self._lambda = client

    def __call__(self, event: Mapping[str, Any], reset_result: bool = True) -> Any:
        """sosw's Worker call: report the event's task completed, then count the call (``Processor``).

        A sosw worker overrides this, does its work, and calls ``super().__call__(event)`` last.
        """
        if isinstance(event, Mapping) and event.get("task_id"):
            try:
                self.mark_task_as_completed(event["task_id"])
            except Exception:  # sosw's: a failed report does not fail the work done
                self.logger.exception("Reporting the task completed failed")
        super().__call__(event, reset_result)

    def mark_task_as_completed(self, task_id: str) -> None:
        """Tell the WorkerAssistant the task's attempt completed, with ``self.result`` and ``self.stats``."""
        self._send_report("mark_task_as_completed", task_id)

    def mark_task_as_failed(self, task_id: str) -> None:
        """Tell the WorkerAssistant the task's attempt failed, with ``self.result`` and ``self.stats``."""
        self._send_report("mark_task_as_failed", task_id)

    def _send_report(self, action: str, task_id: Any) -> None:
        fields = self._pending.pop(task_id, None)
        if fields is None:  # sosw's way: what the worker keeps in its result and stats
            fields = {k: dict(v) for k, v in (("stats", self.stats), ("result", self.result)) if v}
        attempt = fields.pop("attempt", None)
        self._report(task_id, attempt, action, **fields)

    def process(self, payload: dict[str, Any]) -> Any:
        """Do the work; return a JSON-serialisable result. Raise to report the attempt failed."""
        raise NotImplementedError

    def handler(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        task_id = event.get("task_id")
        attempt = event.get("attempts")
        labourer_id = str(event.get("labourer_id") or os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "worker"))
        self.logger.append_keys(task_id=task_id, labourer_id=labourer_id, attempt=attempt)
        self._pending.clear()  # a report an override did not send is not carried to the next event
        try:
            return self._run(event, task_id, attempt, labourer_id)
        finally:
            self.logger.remove_keys(["task_id", "labourer_id", "attempt"])

    def _run(self, event: Mapping[str, Any], task_id: Any, attempt: Any, labourer_id: str) -> dict[str, Any]:
        if task_id and isinstance(attempt, int) and attempt >= 1:
            start = self._call_assistant(
                {
                    "action": "start_task",
                    "task_id": task_id,
                    "attempt": attempt,
                    "labourer_id": event.get("labourer_id"),
                    "token": uuid.uuid4().hex,  # one per delivery: a retried call is recognised as ours
                },
                sync=True,
            )
            if start.get("outcome") != "accepted":
                self.logger.info(
                    "Delivery not run", extra={"outcome": start.get("outcome"), "reason": start.get("reason")}
                )
                put_labourer_metric("worker_skipped", 1, labourer_id)
                return {"task_id": task_id, "status": "skipped", "reason": start.get("reason")}
        payload = {k: v for k, v in event.items() if k not in WORKER_EVENT_FIELDS}
        started = time.monotonic()
        try:
            result = self.process(payload)
        except Exception as exc:
            elapsed = time.monotonic() - started
            self.logger.exception("Task failed")
            self._pending[task_id] = {
                "attempt": attempt,
                "labourer_id": event.get("labourer_id"),
                "stats": {"duration": elapsed},
                "error": {"type": type(exc).__name__, "message": str(exc)[:1000]},
            }
            self.mark_task_as_failed(task_id)
            put_labourer_metric("worker_failed", 1, labourer_id)
            return {"task_id": task_id, "status": "failed", "error": type(exc).__name__}
        elapsed = time.monotonic() - started
        report: dict[str, Any] = {"result": result, "stats": {"duration": elapsed}}
        task = {k: event[k] for k in WORKER_EVENT_FIELDS if k in event}
        task["payload"] = json.dumps(payload, default=str)
        if len(task["payload"]) < MAX_TASK_IN_REPORT:
            report["task"] = task  # lets the assistant close the task in the same write
        self._pending[task_id] = {"attempt": attempt, **report}
        self.mark_task_as_completed(task_id)
        self.logger.info("Task completed", extra={"duration": elapsed})
        put_labourer_metrics(labourer_id, {"worker_completed": 1}, seconds={"worker_duration": elapsed})
        return {"task_id": task_id, "status": "completed"}

    def _report(self, task_id: Any, attempt: Any, action: str, **fields: Any) -> None:
        if not task_id:
            self.logger.warning("Event has no task_id: nothing to report")
            return
        event = {"action": action, "task_id": task_id, **fields}
        if isinstance(attempt, int):
            event["attempt"] = attempt
        self._call_assistant(event, sync=False)

    def _call_assistant(self, event: dict[str, Any], *, sync: bool) -> dict[str, Any]:
        response = self.lambda_client.invoke(
            FunctionName=self.assistant_function,
            InvocationType="RequestResponse" if sync else "Event",
            Payload=json.dumps(event, default=str),
        )
        if not sync:
            return {}
        body = json.loads(response["Payload"].read() or b"{}")
        if response.get("FunctionError"):
            raise RuntimeError(f"WorkerAssistant failed: {body}")
        return body
