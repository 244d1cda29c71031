"""The workers (labourers' functions): created from code, or imported by ARN, with their async config.

Every worker's asynchronous invocations get: no Lambda-level retries (the Scavenger retries, with the
labourer's policy, and a Lambda retry would run an attempt twice), a maximum event age no longer
than the labourer's cooldown (an older event would start after its task was given up as expired),
and the failure handler as on-failure destination (crashes and timeouts become failure reports at
once instead of waiting for the expiry window).

Lambda delivers to the destination with the *worker's* role, and a worker reports through the
WorkerAssistant with it too. The stack grants both to the workers it creates; for an imported worker
its owner must add them, so synth prints the exact policy (and fails with ``strict`` until the worker
says ``permissions_confirmed``): otherwise ``cdk deploy`` itself would fail on the async config.
"""

from __future__ import annotations

import json
import sys

from aws_cdk import ArnFormat, CfnOutput, Stack, Token
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import ConfigError, StackConfig, WorkerConfig
from infra.functions import ControlFunctions
from infra.lambda_function import SoswFunction
from infra.layer import SharedLayer

__all__ = ["Workers"]


class Workers(Construct):
    """``workers.arns``: labourer id -> the ARN the Orchestrator invokes (for grants)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        layer: SharedLayer,
        functions: ControlFunctions,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.layer = layer
        self.control = functions
        self.created: dict[str, SoswFunction] = {}
        self.arns: dict[str, str] = {}
        self.owner_policies: dict[str, dict[str, object]] = {}
        for worker in config.workers:
            if worker.imported:
                self._import_worker(worker)
            else:
                self._build_worker(worker)
        functions.allow_workers(list(self.arns.values()))

    # ------------------------------------------------------------------ created workers

    def _build_worker(self, worker: WorkerConfig) -> None:
        assistant = self.control.worker_assistant
        function = SoswFunction(
            self,
            f"Worker-{worker.name}",
            config=self.config,
            layer=self.layer,
            function_name=str(worker.function_name),
            code=str(worker.code),
            environment={
                **self.control.common_environment(),
                **worker.environment,
                "SOSW_WORKER_ASSISTANT_FUNCTION": self.config.functions["worker_assistant"].name,
            },
            memory_size=worker.memory_size,
            timeout=worker.timeout,
            reserved_concurrency=worker.reserved_concurrency,
            description=f"sosw worker of labourer {worker.name}",
        )
        # Start, completion and failure reports: the only thing a worker's role may do besides its logs.
        function.allow("ReportToAssistant", ["lambda:InvokeFunction"], [assistant.function_arn])
        function.configure_async(
            destination_arn=self.control.failure_handler.function_arn,
            retry_attempts=0,
            max_event_age=worker.max_event_age,
            destination_actions=["lambda:InvokeFunction"],
        )
        self.created[worker.name] = function
        self.arns[worker.name] = function.function_arn

    # ------------------------------------------------------------------ imported workers

    def _import_worker(self, worker: WorkerConfig) -> None:
        stack = Stack.of(self)
        parts = worker.arn_parts()
        if parts is None:  # a plain function name: in this stack's account and region
            arn = stack.format_arn(
                service="lambda",
                resource="function",
                resource_name=worker.arn,
                arn_format=ArnFormat.COLON_RESOURCE_NAME,
            )
            base, qualifier = arn, "$LATEST"
        else:
            self._check_same_account(worker, parts)
            arn = str(worker.arn)
            qualifier = parts["qualifier"] or "$LATEST"
            base = arn if parts["qualifier"] is None else arn.rsplit(":", 1)[0]
        lambda_.CfnEventInvokeConfig(
            self,
            f"Worker-{worker.name}-AsyncConfig",
            function_name=base,
            qualifier=qualifier,
            maximum_retry_attempts=0,
            maximum_event_age_in_seconds=worker.max_event_age,
            destination_config=lambda_.CfnEventInvokeConfig.DestinationConfigProperty(
                on_failure=lambda_.CfnEventInvokeConfig.OnFailureProperty(
                    destination=self.control.failure_handler.function_arn
                )
            ),
        )
        self.arns[worker.name] = arn
        self._require_owner_policy(worker, parts)

    def _check_same_account(self, worker: WorkerConfig, parts: dict[str, str | None]) -> None:
        stack = Stack.of(self)
        for part, value in (("account", stack.account), ("region", stack.region)):
            if not Token.is_unresolved(value) and parts[part] != value:
                raise ConfigError(
                    f"cdk.json context 'sosw.workers.{worker.name}.arn': the worker is in {part} {parts[part]}, "
                    f"the stack in {value}; the stack can only configure and invoke workers of its own {part}"
                )

    def owner_policy(self) -> dict[str, object]:
        """The statement an imported worker's role needs (ARNs resolved at deploy time)."""
        return {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "SoswReportsAndFailureDestination",
                    "Effect": "Allow",
                    "Action": "lambda:InvokeFunction",
                    "Resource": [
                        self.control.worker_assistant.function_arn,
                        self.control.failure_handler.function_arn,
                    ],
                }
            ],
        }

    def _readable_policy(self, parts: dict[str, str | None] | None) -> str:
        """The owner policy with ARNs spelt out, from the worker's own ARN where it has one."""
        stack = Stack.of(self)

        def known(value: str | None, fallback: str) -> str:
            return value if value and not Token.is_unresolved(value) else fallback

        partition = known((parts or {}).get("partition"), "<partition>")
        region = known((parts or {}).get("region") or stack.region, "<region>")
        account = known((parts or {}).get("account") or stack.account, "<account>")
        names = [self.config.functions["worker_assistant"].name, self.config.functions["failure_handler"].name]
        policy = self.owner_policy()
        statement = policy["Statement"][0]  # type: ignore[index]
        statement["Resource"] = [f"arn:{partition}:lambda:{region}:{account}:function:{n}" for n in names]
        return json.dumps(policy, indent=2)

    def _require_owner_policy(self, worker: WorkerConfig, parts: dict[str, str | None] | None) -> None:
        self.owner_policies[worker.name] = self.owner_policy()
        CfnOutput(
            self,
            f"Worker-{worker.name}-OwnerPolicy",
            description=f"IAM policy the role of imported worker {worker.name} needs",
            value=Stack.of(self).to_json_string(self.owner_policy()),
        )
        if worker.permissions_confirmed:
            return
        message = (
            f"Imported worker {worker.name!r} ({worker.arn}): add this policy to its execution role before "
            f"deploying (Lambda checks it when the stack sets the on-failure destination, and the worker "
            f"needs it to report through the WorkerAssistant), then set "
            f"'sosw.workers.{worker.name}.permissions_confirmed': true:\n{self._readable_policy(parts)}"
        )
        if self.config.strict:
            raise ConfigError(f"strict: {message}")
        print(f"WARNING: {message}", file=sys.stderr)
