#!/usr/bin/env python
"""The sosw side of the differential suite: runs a JSON list of calls against PyPI sosw 0.7.51 on DynamoDB Local.

Run with the Python of sosw's own virtualenv (``make test`` creates it), never with this project's: both
packages are named ``sosw``. This file imports nothing of this project.

    AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:PORT .cache/bench-sosw-venv/bin/python sosw_side.py < spec.json

The spec (stdin)::

    {
      "config": {...},              # the TaskManager custom_config (table names, labourers, ...)
      "lambda_timeout": 60,         # what the stand-in Lambda client answers for a worker's Timeout
      "int_labourer_keys": false,   # digit-only labourer keys become ints (sosw keeps key types)
      "calls": [{"method": NAME, "args": [...], "kwargs": {...}, "target": T}, ...]
    }

Targets: "task_manager" (default), "worker_assistant", "orchestrator", "scavenger" (sosw's processors, built
from ``custom_config``, clients replaced as sosw users' tests replace them), and "sosw" for the pseudo methods:
"register_labourers", "invocations" (what the Lambda stand-in received), "sns_messages", "new_labourer"
(``Labourer(**kwargs)``, returns its attributes), "labourer_attr" (kwargs ``labourer`` and ``attr``).
In args and kwargs, ``{"$labourer": ID}`` is ``TaskManager.get_labourer(ID)``, ``{"$new_labourer": {...}}`` a
``Labourer(**kwargs)`` built by the caller (not from the config), and ``{"$ref": [i, key, ...]}`` a part of the
i-th call's result.

Output: one JSON line per call, ``{"i", "call", "result"}`` or ``{"i", "call", "exception", "message"}``; a
Decimal sosw returns (inside a list) is ``{"$decimal": "1"}``.

Set-up, as sosw runs outside Lambda: ``sosw.app.get_config`` gives ``{}`` (no config table), ``skip_glue`` in
each DynamoDB config, meta writes off, a Lambda context object for the MetaHandler.

With ``"surface": true`` in the spec, no call is made: the output is one line, ``{"surface": ...}``, the public
names of sosw's classes (``surface_probe.describe``) built as sosw's own unit tests build them (``boto3.client``
patched, ``init_clients: []``), and each module's ``__all__``.
"""

from __future__ import annotations

import copy
import decimal
import json
import logging
import os
import sys
from typing import Any

os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import sosw.app

sosw.app.get_config = lambda name: {}  # Processor.get_config calls this module-level name

from sosw.labourer import Labourer  # noqa: E402
from sosw.managers.task import TaskManager  # noqa: E402
from sosw.orchestrator import Orchestrator  # noqa: E402
from sosw.scavenger import Scavenger  # noqa: E402
from sosw.worker_assistant import WorkerAssistant  # noqa: E402


class LambdaContext:
    function_name = aws_request_id = log_stream_name = "sosw_side"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:sosw_side"


class StubLambda:
    """Stands in for the Lambda client, as sosw users' tests replace it: records invocations, answers Timeout."""

    def __init__(self, timeout: int) -> None:
        self.timeout = timeout
        self.invocations: list[dict[str, Any]] = []

    def get_function_configuration(self, FunctionName: str, **_: Any) -> dict[str, Any]:
        return {"FunctionName": FunctionName, "Timeout": self.timeout}

    def invoke(self, FunctionName: str, InvocationType: str = "", Payload: str = "", **_: Any) -> dict[str, Any]:
        self.invocations.append(
            {"FunctionName": FunctionName, "InvocationType": InvocationType, "Payload": json.loads(Payload or "null")}
        )
        return {"StatusCode": 202}


class StubSns:
    """Stands in for sosw's SnsManager: records the messages."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send_message(self, message: str, **kwargs: Any) -> None:
        self.messages.append({"message": message, **kwargs})

    def commit(self) -> None:
        pass


def to_json(value: Any) -> Any:
    if isinstance(value, Labourer):
        return {"__labourer__": {k: to_json(v) for k, v in sorted(vars(value).items())}}
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return repr(value)


#: The classes of sosw 0.7.51 whose public surface this package offers, by module.
SURFACE_MODULES = (
    "sosw.app",
    "sosw.labourer",
    "sosw.managers.ecology",
    "sosw.managers.task",
    "sosw.orchestrator",
    "sosw.scavenger",
    "sosw.scheduler",
    "sosw.worker",
    "sosw.worker_assistant",
)


def surface(config: dict[str, Any]) -> dict[str, Any]:
    """sosw's classes built as its unit tests build them (sosw/test/unit/test_*.py), described."""
    import importlib
    import types
    from unittest.mock import patch

    from surface_probe import describe

    from sosw.app import LambdaGlobals, Processor
    from sosw.managers.ecology import EcologyManager
    from sosw.scheduler import Scheduler
    from sosw.worker import Worker

    # The Scheduler names its queue file after the request id (sosw's Scheduler tests set this context).
    sosw.app.global_vars.lambda_context = types.SimpleNamespace(
        aws_request_id="surface",
        invoked_function_arn=LambdaContext.invoked_function_arn,
        get_remaining_time_in_millis=lambda: 300_000,
    )
    task_config = {**copy.deepcopy(config), "init_clients": []}
    essential = {"init_clients": [], "task_config": task_config}
    with patch("boto3.client"):
        objects = {
            "TaskManager": TaskManager(custom_config=task_config),
            "EcologyManager": EcologyManager(custom_config={"test": True}),
            "Labourer": Labourer(
                id="some_function", arn="arn:aws:lambda:us-west-2:000000000000:function:some_function"
            ),
            "Orchestrator": Orchestrator(custom_config=copy.deepcopy(essential)),
            "Scavenger": Scavenger(custom_config=copy.deepcopy(essential)),
            "WorkerAssistant": WorkerAssistant(
                custom_config={"init_clients": [], "dynamo_db_config": task_config["dynamo_db_config"]}
            ),
            "Scheduler": Scheduler(
                custom_config={**copy.deepcopy(essential), "job_schema": {"chunkable_attrs": [["section", {}]]}}
            ),
            "Worker": Worker(),
            "Processor": Processor(custom_config={}),
            "LambdaGlobals": LambdaGlobals(),
        }
    modules = {name: sorted(importlib.import_module(name).__all__) for name in SURFACE_MODULES}
    classes = {name: {"module": type(obj).__module__, "names": describe(obj)} for name, obj in objects.items()}
    return {"classes": classes, "modules": modules}


def main() -> int:
    logging.disable(logging.CRITICAL)  # sosw logs every config at INFO on the root logger
    spec = json.load(sys.stdin)
    if spec.get("surface"):
        print(json.dumps({"surface": surface(spec["config"])}, default=repr), flush=True)
        return 0
    config = copy.deepcopy(spec["config"])
    if spec.get("int_labourer_keys"):
        config["labourers"] = {int(k) if str(k).isdigit() else k: v for k, v in config["labourers"].items()}
    config.setdefault("dynamo_db_config", {})["skip_glue"] = True
    sosw.app.global_vars.lambda_context = LambdaContext()
    meta_off = {"write_meta_to_ddb": False}
    stub_lambda = StubLambda(int(spec.get("lambda_timeout", 60)))
    stub_sns = StubSns()

    tm = TaskManager(custom_config=copy.deepcopy(config))
    tm.lambda_client = stub_lambda
    processors: dict[str, Any] = {}

    def target(name: str) -> Any:
        if name == "task_manager":
            return tm
        if name not in processors:
            if name == "worker_assistant":
                wa_config = {"dynamo_db_config": {**config["dynamo_db_config"]}, "meta_handler_config": meta_off}
                processors[name] = WorkerAssistant(custom_config=wa_config)
            elif name == "orchestrator":
                processors[name] = Orchestrator(
                    custom_config={"task_config": copy.deepcopy(config), "meta_handler_config": meta_off}
                )
                processors[name].task_client.lambda_client = stub_lambda
            elif name == "scavenger":
                processors[name] = Scavenger(
                    custom_config={
                        "task_config": copy.deepcopy(config),
                        "meta_handler_config": meta_off,
                        "sns_config": {"recipient": "arn:aws:sns:us-east-1:000000000000:dead", "subject": "x"},
                    }
                )
                processors[name].task_client.lambda_client = stub_lambda
                processors[name].sns_client = stub_sns
            else:
                raise ValueError(f"unknown target {name}")
        return processors[name]

    results: list[Any] = []

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"$labourer"}:
                lid = value["$labourer"]
                return tm.get_labourer(int(lid) if spec.get("int_labourer_keys") and str(lid).isdigit() else lid)
            if set(value) == {"$new_labourer"}:
                return Labourer(**value["$new_labourer"])
            if set(value) == {"$ref"}:
                out = results[value["$ref"][0]]
                for key in value["$ref"][1:]:
                    out = out[key]
                return copy.deepcopy(out)
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    for i, call in enumerate(spec["calls"]):
        method, name = call["method"], call.get("target", "task_manager")
        record: dict[str, Any] = {"i": i, "call": method if name == "task_manager" else f"{name}.{method}"}
        try:
            args, kwargs = resolve(call.get("args", [])), resolve(call.get("kwargs", {}))
            if name == "sosw":
                if method == "register_labourers":
                    value = tm.register_labourers()
                elif method == "invocations":
                    value = list(stub_lambda.invocations)
                elif method == "sns_messages":
                    value = list(stub_sns.messages)
                elif method == "new_labourer":
                    value = {k: v for k, v in vars(Labourer(**kwargs)).items()}
                elif method == "labourer_attr":
                    value = getattr(kwargs["labourer"], kwargs["attr"])
                else:
                    raise ValueError(f"unknown pseudo method {method}")
            else:
                value = getattr(target(name), method)(*args, **kwargs)
            results.append(value)
            record["result"] = to_json(value)
        except Exception as err:  # every failure is part of the answer
            results.append(None)
            record["exception"] = type(err).__name__
            record["message"] = str(err)
        print(json.dumps(record, default=repr), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
