"""One Lambda function with the defaults every function of the stack shares.

Runtime and architecture of the layer, the layer itself, X-Ray tracing, JSON logs into an explicit log
group with retention, a role of its own that starts with nothing but writing its logs, and a check
that the environment fits Lambda's 4 KB: what one function needs beyond that is granted next to the
code that needs it (:mod:`infra.functions`, :mod:`infra.workers`).
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Token, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.config import PROJECT_ROOT, ConfigError, StackConfig
from infra.layer import SharedLayer

__all__ = ["CODE_METADATA", "ENVIRONMENT_LIMIT_BYTES", "TOKEN_SIZE_BOUND", "SoswFunction", "environment_size"]

#: Template metadata of each function: its code folder relative to the project root (no machine path).
CODE_METADATA = "sosw:code"

#: Lambda rejects a function whose environment variables (names and values) exceed 4 KB in total.
ENVIRONMENT_LIMIT_BYTES = 4096
#: A value known only at deploy time (an ARN) is counted as this many bytes: more than any ARN we pass.
TOKEN_SIZE_BOUND = 320

#: Why the X-Ray statement CDK adds for active tracing has Resource "*".
XRAY_REASON = (
    "X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level "
    "permissions (Service Authorization Reference), so AWS only accepts Resource '*' for them."
)


def environment_size(environment: Mapping[str, str]) -> int:
    """Bytes Lambda counts for these variables; deploy-time values are counted at :data:`TOKEN_SIZE_BOUND`."""
    size = 0
    for key, value in environment.items():
        size += len(key.encode())
        size += TOKEN_SIZE_BOUND if Token.is_unresolved(value) else len(value.encode())
    return size


class SoswFunction(Construct):
    """A function of the stack: ``SoswFunction(self, "Orchestrator", config=..., layer=..., ...)``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        layer: SharedLayer,
        function_name: str,
        code: str,
        environment: Mapping[str, str],
        memory_size: int,
        timeout: int,
        description: str,
        reserved_concurrency: int | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self._check_environment(function_name, environment)
        self.config = config
        self.log_group = self._build_log_group(config, function_name)
        self.role = self._build_role(description)
        self.function = lambda_.Function(
            self,
            "Function",
            function_name=function_name,
            description=description,
            runtime=layer.runtime,
            architecture=layer.architecture,
            handler="app.handler",
            code=lambda_.Code.from_asset(str(PROJECT_ROOT / code), exclude=["__pycache__", "*.pyc", "*.pyo"]),
            layers=[layer.layer],
            role=self.role,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            tracing=lambda_.Tracing.ACTIVE,
            memory_size=memory_size,
            timeout=Duration.seconds(timeout),
            environment=dict(environment),
            reserved_concurrent_executions=reserved_concurrency,
        )
        # The code folder, relative to the project: `sosw local` runs it and re-stages it when it changes.
        self.function.node.default_child.add_metadata(CODE_METADATA, code)  # type: ignore[union-attr]
        self._acknowledge_findings()

    @staticmethod
    def _check_environment(function_name: str, environment: Mapping[str, str]) -> None:
        size = environment_size(environment)
        if size > ENVIRONMENT_LIMIT_BYTES:
            biggest = sorted(environment, key=lambda k: -environment_size({k: environment[k]}))[:3]
            raise ConfigError(
                f"function {function_name!r}: its environment variables take {size} bytes, over Lambda's "
                f"{ENVIRONMENT_LIMIT_BYTES}-byte limit (largest: {biggest}); keep configuration in the SSM "
                f"parameter instead"
            )

    def _build_log_group(self, config: StackConfig, function_name: str) -> logs.LogGroup:
        # Not /aws/lambda/<name>: a function of that name may have existed (a sosw install), and its
        # log group would make the deploy fail with "already exists".
        log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/sosw/{config.stage}/{function_name}",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.RETAIN if config.production else RemovalPolicy.DESTROY,
        )
        # Any of CloudWatch's retention values (validated in config.py), not only those with an enum name.
        log_group.node.default_child.retention_in_days = config.log_retention_days  # type: ignore[union-attr]
        return log_group

    def _build_role(self, description: str) -> iam.Role:
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Runs: {description}"[:1000],
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteOwnLogs",
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                # The log group's ARN ends in ':*', which covers its streams and nothing else.
                resources=[self.log_group.log_group_arn],
            )
        )
        return role

    def _acknowledge_findings(self) -> None:
        policy = self.role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            Validations.of(policy).acknowledge(Acknowledgment(id="AwsSolutions-IAM5[Resource::*]", reason=XRAY_REASON))
        Validations.of(self.function).acknowledge(
            Acknowledgment(
                id="Serverless-LambdaDLQ",
                reason="Failed asynchronous events go to an on-failure destination (EventInvokeConfig), Lambda's "
                "successor to DLQs: it also records the error and the request context.",
            )
        )

    # ------------------------------------------------------------------ shared helpers

    @property
    def function_name(self) -> str:
        return self.function.function_name

    @property
    def function_arn(self) -> str:
        return self.function.function_arn

    def allow(self, sid: str, actions: list[str], resources: list[str], **kwargs: object) -> None:
        """Add one named statement to this function's role."""
        self.role.add_to_policy(iam.PolicyStatement(sid=sid, actions=actions, resources=resources, **kwargs))

    def configure_async(
        self, *, destination_arn: str, retry_attempts: int, max_event_age: int, destination_actions: list[str]
    ) -> lambda_.CfnEventInvokeConfig:
        """Asynchronous invocations: Lambda's retries, the event's maximum age and the on-failure destination.

        The destination is written as L1 with its own exact grant: CDK's destinations grant ``arn:*``
        (every version) and extra queue actions, more than Lambda needs to deliver a record.
        """
        self.allow("SendFailedEvents", destination_actions, [destination_arn])
        invoke_config = lambda_.CfnEventInvokeConfig(
            self,
            "AsyncConfig",
            function_name=self.function.function_name,
            qualifier="$LATEST",
            maximum_retry_attempts=retry_attempts,
            maximum_event_age_in_seconds=max_event_age,
            destination_config=lambda_.CfnEventInvokeConfig.DestinationConfigProperty(
                on_failure=lambda_.CfnEventInvokeConfig.OnFailureProperty(destination=destination_arn)
            ),
        )
        # Lambda checks the role's permission for the destination when the config is created.
        invoke_config.node.add_dependency(self.role)
        return invoke_config
