"""Synthesized stacks shared by the infrastructure tests, and helpers to read their templates.

Each configuration is synthesized once per session (synth costs seconds): ``dev`` is cdk.json as
shipped; ``prod`` is the same file at stage prod with every option switched on (customer-managed
keys, provisioned billing, imported workers, an alarm email, other schedules). Both use the layer
built from sources only, so these tests need no network; tests/infra/test_layer.py builds the real one.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Environment
from aws_cdk.assertions import Template

from infra.config import StackConfig, load_cdk_json_context
from infra.stack import SoswStack

LEGACY_ARN = "arn:aws:lambda:eu-west-1:123456789012:function:legacy_worker:live"

#: Everything switched on: a second stage of the same cdk.json.
PROD_OVERRIDES: dict[str, Any] = {
    "tables": {
        "billing": "provisioned",
        "read_capacity": 7,
        "write_capacity": 3,
        "encryption": "customer_managed",
        "closed_task_ttl_days": 30,
    },
    "schedules": {"orchestrator": "rate(2 minutes)", "scavenger": "cron(0/5 * * * ? *)"},
    "functions": {"orchestrator": {"reserved_concurrency": 3}},
    "alarms": {"email": "ops@example.com", "silence_periods": 5},
    "workers": {
        "example_worker": {"code": "lambdas/worker", "timeout": 60, "duration": 60, "cooldown": 30},
        "resize": {
            "max_simultaneous_invocations": 20,
            "duration": 300,
            "cooldown": 600,
            "timeout": 240,
            "memory_size": 1024,
            "environment": {"BUCKET": "images"},
            "never_retry_errors": ["ValueError"],
            "health_metrics": {
                "throttles": {
                    "details": {
                        "Namespace": "AWS/Lambda",
                        "MetricName": "Throttles",
                        "Dimensions": [{"Name": "FunctionName", "Value": "prod_resize"}],
                        "Statistics": ["Sum"],
                    },
                    "feelings": {"4": 0, "2": 5},
                    "feeling_comparison_operator": "__le__",
                }
            },
        },
        "legacy": {"arn": LEGACY_ARN, "max_attempts": 5, "permissions_confirmed": True},
        "by_name": {"arn": "someone_elses_worker", "cooldown": 90000},
    },
}


@dataclass
class Synth:
    """One synthesized app: its config, stack, template and what synth printed."""

    app: App
    config: StackConfig
    stack: SoswStack
    template: Template
    stderr: str

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.template.to_json()["Resources"]

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == type_}

    def function(self, name: str) -> tuple[str, dict[str, Any]]:
        """(logical id, properties) of the Lambda function with this FunctionName."""
        for logical_id, resource in self.of_type("AWS::Lambda::Function").items():
            if resource["Properties"].get("FunctionName") == name:
                return logical_id, resource["Properties"]
        raise AssertionError(f"no function {name!r}")

    def function_arn(self, name: str) -> dict[str, Any]:
        return {"Fn::GetAtt": [self.function(name)[0], "Arn"]}

    def table(self, name: str) -> tuple[str, dict[str, Any]]:
        for logical_id, resource in self.of_type("AWS::DynamoDB::Table").items():
            if resource["Properties"]["TableName"] == name:
                return logical_id, resource
        raise AssertionError(f"no table {name!r}")

    def table_arn(self, name: str) -> dict[str, Any]:
        return {"Fn::GetAtt": [self.table(name)[0], "Arn"]}

    def index_arn(self, table: str, index: str) -> dict[str, Any]:
        return {"Fn::Join": ["", [self.table_arn(table), f"/index/{index}"]]}

    def logical_id(self, type_: str) -> str:
        (logical_id,) = self.of_type(type_)
        return logical_id

    def statements(self, function_name: str) -> list[dict[str, Any]]:
        """Every statement of every policy attached to the function's role."""
        role = self.function(function_name)[1]["Role"]["Fn::GetAtt"][0]
        found = []
        for policy in self.of_type("AWS::IAM::Policy").values():
            if {"Ref": role} in policy["Properties"]["Roles"]:
                found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
        return found

    def statements_by_sid(self, function_name: str) -> dict[str, dict[str, Any]]:
        """Statements by Sid, with actions and resources as sorted lists (the CDK writes one as a string)."""
        result = {}
        for statement in self.statements(function_name):
            if "Sid" not in statement:
                continue
            assert statement["Sid"] not in result, f"Sid {statement['Sid']} twice on {function_name}"
            result[statement["Sid"]] = {
                "Action": sorted(as_list(statement["Action"])),
                "Resource": as_list(statement["Resource"]),
                **({"Condition": statement["Condition"]} if "Condition" in statement else {}),
            }
        return result


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def cdk_context(cli_stage: str | None = None, **sosw: Any) -> dict[str, Any]:
    """cdk.json's context with ``sosw`` keys replaced and the layer from sources only.

    ``cli_stage`` is set as ``cdk synth -c stage=...`` would.
    """
    context = copy.deepcopy(load_cdk_json_context())
    context["sosw"].update(copy.deepcopy(sosw))
    context["sosw"]["layer_build"] = "sources_only"
    if cli_stage is not None:
        context["stage"] = cli_stage
    return context


def synthesize(outdir: Path, context: dict[str, Any], env: Environment | None = None) -> Synth:
    """Build and synthesize the app as app.py does, capturing what it prints."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        app = App(context=context, outdir=str(outdir))
        config = StackConfig.from_context(app.node)
        stack = SoswStack(app, config.stack_name, config=config, env=env)
        app.synth()
    return Synth(app, config, stack, Template.from_stack(stack), stderr.getvalue())


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """cdk.json as shipped (stage dev)."""
    return synthesize(tmp_path_factory.mktemp("dev"), cdk_context())


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Stage prod of the same cdk.json, with every option on."""
    return synthesize(tmp_path_factory.mktemp("prod"), cdk_context(cli_stage="prod", **PROD_OVERRIDES))


@pytest.fixture
def captured_output() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    with contextlib.redirect_stderr(buffer):
        yield buffer


def parameter_config(synth: Synth) -> dict[str, Any]:
    """The TaskManager config the stack writes to SSM, as the Lambdas will read it."""
    (parameter,) = synth.of_type("AWS::SSM::Parameter").values()
    return json.loads(parameter["Properties"]["Value"])
