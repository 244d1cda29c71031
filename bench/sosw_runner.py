"""Drives sosw 0.7.51 through one workload (``python -m bench.sosw_runner SPEC.json RESULT.json``, run by the
benchmark's own virtualenv ``.cache/bench-sosw-venv``, where ``sosw`` is PyPI's sosw 0.7.51).

Driven as its Lambdas run it, one warm instance each (sosw keeps its processor in ``global_vars``):
``TaskManager.create_task`` per task, ``Orchestrator({})`` (which calls ``TaskManager.invoke_task`` one task
after another), sosw's ``Worker`` through ``get_lambda_handler`` (its report to the WorkerAssistant is
captured, then applied by ``WorkerAssistant(report)``), ``Scavenger({})``. What had to be set up so that it
runs here, and nothing else:

- ``sosw.app.get_config`` returns an empty config (it would read the ``config`` DynamoDB table / SSM);
- ``skip_glue`` in every ``dynamo_db_config`` (else each DynamoDbClient asks AWS Glue for the schema);
- the MetaHandler's ``write_meta_to_ddb`` is False (meta-table writes off, as the issue asks);
- a Lambda context object for the MetaHandler's log fields (it reads them even when it writes nothing);
- the Scavenger's SnsManager is replaced by a stub that keeps the dead-task messages (SNS is not metered);
- retry workload only: sosw 0.7.51's ``register_labourers`` refuses ``duration`` and ``cooldown`` in the
  labourer config (``set_custom_attribute`` allows only its CUSTOM_ATTRIBUTES), so they are set through
  ``Labourer.DEFAULTS``, which its constructor applies. Time is not patched: the retry workload runs in
  real time with a second or two of duration, cooldown and max_duration, for both stacks.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from bench.common import DynamoMeter, runner_main

METER = DynamoMeter()
METER.install_on_default_session()  # before any client exists

import sosw.app  # noqa: E402 - the meter must be installed before sosw creates clients
from sosw.labourer import Labourer  # noqa: E402
from sosw.managers.task import TaskManager  # noqa: E402
from sosw.orchestrator import Orchestrator  # noqa: E402
from sosw.scavenger import Scavenger  # noqa: E402
from sosw.worker import Worker  # noqa: E402
from sosw.worker_assistant import WorkerAssistant  # noqa: E402

sosw.app.get_config = lambda name: {}  # Processor.get_config calls this module-level name


class LambdaContext:
    function_name = "bench"
    aws_request_id = "bench"
    log_stream_name = "bench"


class StubSns:
    def __init__(self) -> None:
        self.messages: list[str] = []

    def send_message(self, message: str, **_: Any) -> None:
        self.messages.append(message)

    def commit(self) -> None:
        pass


class CapturingLambda:
    """The Worker's Lambda client: keeps what it would send the WorkerAssistant."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def invoke(self, FunctionName: str, InvocationType: str, Payload: str) -> dict[str, Any]:
        self.sent.append(json.loads(Payload))
        return {"StatusCode": 202}


class BenchWorker(Worker):
    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        super().__call__(event)  # reports completed through the WorkerAssistant, counts the call
        return {"done": True}


class SoswStack:
    name = "sosw"  # no duplicate-delivery guard in sosw

    def __init__(self, spec: dict[str, Any]) -> None:
        sosw.app.global_vars.lambda_context = LambdaContext()
        tables = spec["tables"]
        self.labourer_id = spec["labourer_id"]
        if "duration" in spec:
            Labourer.DEFAULTS = {"duration": spec["duration"], "cooldown": spec["cooldown"]}
        labourer = {"arn": self.labourer_id, "max_simultaneous_invocations": spec["limit"]}
        if "max_duration" in spec:
            labourer["max_duration"] = spec["max_duration"]
        task_config = {
            "dynamo_db_config": {"table_name": tables["tasks"], "index_greenfield": tables["index"], "skip_glue": True},
            "sosw_closed_tasks_table": tables["closed"],
            "sosw_closed_tasks_labourer_status_index": tables["closed_index"],
            "sosw_retry_tasks_table": tables["retry"],
            "labourers": {self.labourer_id: labourer},
        }
        meta_off = {"write_meta_to_ddb": False}
        self.task_manager = TaskManager(custom_config=task_config)
        self.orchestrator = Orchestrator(custom_config={"task_config": task_config, "meta_handler_config": meta_off})
        self.scavenger = Scavenger(
            custom_config={
                "task_config": task_config,
                "meta_handler_config": meta_off,
                "sns_config": {"recipient": "arn:aws:sns:us-east-1:000000000000:bench", "subject": "bench"},
            }
        )
        self.scavenger.sns_client = StubSns()
        # sosw's own Worker, as its Lambda runs it (get_lambda_handler, one warm processor): what it sends the
        # WorkerAssistant is captured, then applied by the WorkerAssistant.
        self._worker_lock = threading.Lock()
        self._capture = CapturingLambda()
        sosw.app.global_vars.processor = BenchWorker(custom_config={"sosw_worker_assistant_lambda": "assistant"})
        sosw.app.global_vars.processor.lambda_client = self._capture
        self._worker_handler = sosw.app.get_lambda_handler(BenchWorker, sosw.app.global_vars)
        self.worker_assistant = WorkerAssistant(
            custom_config={
                "dynamo_db_config": {"table_name": tables["tasks"], "skip_glue": True},
                "meta_handler_config": meta_off,
            }
        )

    def create(self, n: int) -> None:
        labourer = self.task_manager.get_labourer(self.labourer_id)
        for i in range(n):
            self.task_manager.create_task(labourer, payload={"i": i})

    def orchestrate_once(self) -> None:
        self.orchestrator({})

    def worker_reports(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        with self._worker_lock:
            self._capture.sent.clear()
            self._worker_handler(event, LambdaContext())
            return list(self._capture.sent)

    def report(self, report: dict[str, Any]) -> str:
        self.worker_assistant(report)
        return "ok"

    def scavenge_once(self) -> None:
        self.scavenger({})


if __name__ == "__main__":
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    runner_main(SoswStack, METER)
