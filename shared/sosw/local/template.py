"""Read the synthesized CloudFormation template into what the local stack runs.

Tables (keys and indexes), functions (staged code, handler, timeout, environment, asynchronous
invoke config and on-failure destination), the config parameter, topics and schedule rates all come
from the template the CDK app synthesizes, so the local run and a deployment can't drift apart.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sosw.local.streams import StreamMapping

PROJECT_ROOT = Path(__file__).resolve().parents[3]
#: The functions' metadata naming their code folder (``infra.lambda_function.CODE_METADATA``).
CODE_METADATA = "sosw:code"
_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class TemplateFunction:
    logical_id: str
    name: str
    code_dir: str
    handler: str
    timeout: float
    environment: Mapping[str, Any]  # values may still be {"Ref": ...}: resolved by the local stack
    on_failure: str | None = None  # a function name, or None (a queue or nothing)
    max_event_age: float | None = None
    retry_attempts: int = 0
    role: str = "worker"  # orchestrator | scavenger | worker_assistant | failure_handler | scheduler | worker
    source: str | None = None  # the code folder it was staged from, relative to the project


@dataclass
class TemplateStack:
    tables: list[dict[str, Any]] = field(default_factory=list)
    functions: list[TemplateFunction] = field(default_factory=list)
    config_parameter: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)  # logical id -> topic name
    schedules: dict[str, float] = field(default_factory=dict)  # function name -> seconds between runs
    streams: list[StreamMapping] = field(default_factory=list)  # event source mappings of table streams

    def function(self, role: str) -> TemplateFunction:
        for function in self.functions:
            if function.role == role:
                return function
        raise KeyError(f"the template has no {role} function")


#: What a local run changes in the stack's context: cdk-nag and the layer's pip build are for a deployment;
#: locally, functions run on this machine's ``sosw`` and nothing is deployed (and nothing is downloaded).
LOCAL_SETTINGS: dict[str, Any] = {"nag": False, "layer_build": "sources_only"}


class SynthError(RuntimeError):
    """The CDK app failed: the message is its last line (a config error names the key)."""


def project_context(project_dir: Path, overrides: Mapping[str, str] | None = None) -> dict[str, Any]:
    """cdk.json's context with ``-c KEY=VALUE`` overrides on top, as the CDK CLI passes them to the app.

    Values stay strings, as the CLI gives them (``-c stage=prod``, ``-c sosw='{...}'``): the app reads them.
    """
    path = project_dir / "cdk.json"
    try:
        context = dict(json.loads(path.read_text()).get("context", {}))
    except (OSError, ValueError) as exc:
        raise SynthError(f"{path.name}: can't read its context ({exc})") from exc
    context.update(overrides or {})
    return context


def _app_command(project_dir: Path) -> list[str]:
    """cdk.json's ``app`` command, run with this interpreter when it is a Python one (it has the CDK libraries)."""
    import shlex

    app = json.loads((project_dir / "cdk.json").read_text()).get("app") or "python app.py"
    command = shlex.split(app)
    if Path(command[0]).name.startswith("python"):
        command[0] = sys.executable
    return command


def synthesize(
    out_dir: Path,
    sosw_context: Mapping[str, Any] | None = None,
    *,
    project_dir: Path = PROJECT_ROOT,
    overrides: Mapping[str, str] | None = None,
    local: bool = False,
) -> Path:
    """Run the project's CDK app into ``out_dir`` and return it.

    ``sosw_context`` replaces cdk.json's ``sosw`` key (the demo's own stack); ``overrides`` are ``-c``
    values; ``local`` adds :data:`LOCAL_SETTINGS` to the ``sosw`` context.
    """
    context = project_context(project_dir, overrides)
    if sosw_context is not None:
        context["sosw"] = dict(sosw_context)
    if local:
        sosw = context.get("sosw")
        if isinstance(sosw, str):  # `-c sosw='{...}'`
            try:
                sosw = json.loads(sosw)
            except ValueError as exc:
                raise SynthError(f"-c sosw: not valid JSON ({exc})") from exc
        if isinstance(sosw, Mapping):
            context["sosw"] = {**sosw, **LOCAL_SETTINGS}
    env = {**os.environ, "CDK_OUTDIR": str(out_dir), "CDK_CONTEXT_JSON": json.dumps(context)}
    result = subprocess.run(_app_command(project_dir), cwd=project_dir, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines() or [f"exit code {result.returncode}"]
        raise SynthError(lines[-1].removeprefix("synth failed: "))
    return out_dir


def load(cdk_out: Path, stack_name: str | None = None) -> TemplateStack:
    """The local stack's description, from a synthesized cloud assembly."""
    manifest = json.loads((cdk_out / "manifest.json").read_text())
    stacks = [name for name, a in manifest["artifacts"].items() if a.get("type") == "aws:cloudformation:stack"]
    name = stack_name or stacks[0]
    template = json.loads((cdk_out / f"{name}.template.json").read_text())
    assets = json.loads((cdk_out / f"{name}.assets.json").read_text())["files"]
    resources: dict[str, Any] = template["Resources"]
    stack = TemplateStack()
    names = {}
    table_names = {}
    for logical_id, resource in resources.items():
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::DynamoDB::Table":
            stack.tables.append(_create_table_kwargs(props))
            table_names[logical_id] = props["TableName"]
        elif kind == "AWS::SSM::Parameter":
            stack.config_parameter = props["Name"]
            stack.config = json.loads(props["Value"])
        elif kind == "AWS::SNS::Topic":
            stack.topics[logical_id] = props.get("TopicName") or logical_id
        elif kind == "AWS::Lambda::Function":
            names[logical_id] = props["FunctionName"]
    configs = {
        _ref(props["FunctionName"]): props
        for props in (
            r.get("Properties", {}) for r in resources.values() if r["Type"] == "AWS::Lambda::EventInvokeConfig"
        )
    }
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        asset = assets[props["Code"]["S3Key"].removesuffix(".zip")]
        invoke = configs.get(logical_id, {})
        destination = invoke.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        target = _get_att_id(destination)
        stack.functions.append(
            TemplateFunction(
                logical_id=logical_id,
                name=props["FunctionName"],
                code_dir=str(cdk_out / asset["source"]["path"]),
                handler=props["Handler"],
                timeout=float(props.get("Timeout", 3)),
                environment=props.get("Environment", {}).get("Variables", {}),
                on_failure=names.get(target) if target else None,
                max_event_age=invoke.get("MaximumEventAgeInSeconds"),
                retry_attempts=int(invoke.get("MaximumRetryAttempts", 2)),  # Lambda's default is 2
                role=_role(logical_id, props),
                source=resource.get("Metadata", {}).get(CODE_METADATA),
            )
        )
    for resource in resources.values():
        if resource["Type"] == "AWS::Lambda::EventSourceMapping":
            mapping = _stream_mapping(resource["Properties"], table_names, names)
            if mapping is not None:
                stack.streams.append(mapping)
        if resource["Type"] == "AWS::Events::Rule":
            seconds = _rate_seconds(resource["Properties"].get("ScheduleExpression", ""))
            for target in resource["Properties"].get("Targets", []):
                function = names.get(_get_att_id(target.get("Arn")) or "")
                if function and seconds:
                    stack.schedules[function] = seconds
    return stack


def _create_table_kwargs(props: Mapping[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "TableName": props["TableName"],
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if props.get("StreamSpecification"):
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(key):
            kwargs[key] = [
                {k: v for k, v in index.items() if k in ("IndexName", "KeySchema", "Projection")}
                for index in props[key]
            ]
    return kwargs


def _stream_mapping(
    props: Mapping[str, Any], tables: Mapping[str, str], functions: Mapping[str, str]
) -> StreamMapping | None:
    table = tables.get(_get_att_id(props.get("EventSourceArn")) or "")
    function = functions.get(_ref(props.get("FunctionName")) or "")
    if not table or not function:
        return None
    names: list[str] = []
    for criterion in (props.get("FilterCriteria") or {}).get("Filters", []):
        names += json.loads(criterion.get("Pattern", "{}")).get("eventName", [])
    return StreamMapping(
        table=table,
        function=function,
        batch_size=int(props.get("BatchSize", 100)),
        batching_window=float(props.get("MaximumBatchingWindowInSeconds", 0)),
        event_names=tuple(names) or ("INSERT", "MODIFY", "REMOVE"),
    )


def _ref(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, Mapping) else value


def _get_att_id(value: Any) -> str | None:
    if isinstance(value, Mapping) and "Fn::GetAtt" in value:
        return value["Fn::GetAtt"][0]
    return None


def _role(logical_id: str, props: Mapping[str, Any]) -> str:
    for role, marker in (
        ("orchestrator", "Orchestrator"),
        ("scavenger", "Scavenger"),
        ("worker_assistant", "WorkerAssistant"),
        ("failure_handler", "FailureHandler"),
    ):
        if logical_id.startswith(f"Functions{marker}"):
            return role
    if logical_id.startswith("JobsScheduler"):
        return "scheduler"
    return "worker"


def _rate_seconds(expression: str) -> float | None:
    match = _RATE.fullmatch(expression.strip())
    if not match:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]
