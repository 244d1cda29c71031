"""The control functions (Orchestrator, Scavenger, WorkerAssistant, failure handler) and their grants.

Each role gets the actions its code performs on the exact tables, indexes, parameter, topic and
functions, written here next to each other so a reviewer reads one function's rights in one place:

- Orchestrator: reads the queue and claims tasks (tasks table + greenfield index), averages durations
  (closed-tasks index), holds a lease per labourer, invokes only the configured workers and reads
  their Timeout, and reads CloudWatch statistics only if a labourer declares health metrics.
- Scavenger: moves tasks between the tasks, retry and closed tables in transactions, publishes dead
  tasks, reads the workers' Timeout; it invokes nothing.
- WorkerAssistant and failure handler: read and update one open task; the WorkerAssistant also closes a
  completed one (delete it, put it in the closed table, in one transaction). Both free the task's slot
  and wake dispatch (the Orchestrator after a completion, the Scavenger after a failure).
- Every state change of a running task moves its labourer's slot counter in the leases table, in the
  same transaction; the Orchestrator also requeues due retries, and wakes itself to go on.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, ArnFormat, Stack, Validations
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import StackConfig
from infra.lambda_function import SoswFunction
from infra.layer import SharedLayer
from infra.messaging import Messaging
from infra.parameter import ConfigParameter
from infra.tables import SoswTables

__all__ = ["HEALTH_METRICS_REASON", "ControlFunctions"]

HEALTH_METRICS_REASON = (
    "EcologyManager health: cloudwatch:GetMetricStatistics supports no resource-level permissions "
    "(Service Authorization Reference), so Resource '*' is the only form AWS accepts; it is read-only."
)
_DESCRIPTIONS = {
    "orchestrator": "sosw Orchestrator: claims and invokes the tasks each labourer may run now",
    "scavenger": "sosw Scavenger: archives, retries and closes tasks, requeues due retries",
    "worker_assistant": "sosw WorkerAssistant: workers report start, completion and failure here",
    "failure_handler": "sosw failure handler: on-failure destination of the workers",
}


class ControlFunctions(Construct):
    """``functions.orchestrator``, ``.scavenger``, ``.worker_assistant``, ``.failure_handler`` (SoswFunction)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        layer: SharedLayer,
        tables: SoswTables,
        messaging: Messaging,
        parameter: ConfigParameter,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.tables = tables
        self.messaging = messaging
        self.parameter = parameter
        wake_orchestrator = {"SOSW_ORCHESTRATOR_FUNCTION": config.functions["orchestrator"].name}
        wake_both = {**wake_orchestrator, "SOSW_SCAVENGER_FUNCTION": config.functions["scavenger"].name}
        self.orchestrator = self._build_function("orchestrator", layer, wake_orchestrator)
        self.scavenger = self._build_function(
            "scavenger", layer, {"SOSW_DEAD_LETTER_TOPIC_ARN": messaging.dead_tasks.topic_arn, **wake_orchestrator}
        )
        self.worker_assistant = self._build_function("worker_assistant", layer, wake_both)
        self.failure_handler = self._build_function("failure_handler", layer, wake_both)
        self._grant_orchestrator()
        self._grant_scavenger()
        self._grant_reporters()
        self._configure_async()

    @property
    def all(self) -> dict[str, SoswFunction]:
        return {
            "orchestrator": self.orchestrator,
            "scavenger": self.scavenger,
            "worker_assistant": self.worker_assistant,
            "failure_handler": self.failure_handler,
        }

    def common_environment(self) -> dict[str, str]:
        """Powertools' settings, shared by every function the stack creates (workers too)."""
        return {
            "POWERTOOLS_SERVICE_NAME": self.config.service_name,
            "POWERTOOLS_METRICS_NAMESPACE": self.config.metrics_namespace,
            "POWERTOOLS_LOG_LEVEL": self.config.log_level,
        }

    def _build_function(self, role: str, layer: SharedLayer, extra: dict[str, str] | None = None) -> SoswFunction:
        settings = self.config.functions[role]
        return SoswFunction(
            self,
            "".join(part.capitalize() for part in role.split("_")),
            config=self.config,
            layer=layer,
            function_name=settings.name,
            code=settings.code,
            environment={
                "SOSW_CONFIG_PARAMETER": self.parameter.name,
                **self.common_environment(),
                **(extra or {}),
            },
            memory_size=settings.memory_size,
            timeout=settings.timeout,
            reserved_concurrency=settings.reserved_concurrency,
            description=_DESCRIPTIONS[role],
        )

    # ------------------------------------------------------------------ grants

    def _grant_config_and_table_key(self, function: SoswFunction) -> None:
        function.allow("ReadConfig", ["ssm:GetParameter"], [self.parameter.parameter_arn])
        if self.tables.key is not None:
            # A customer-managed table key: DynamoDB uses it on the caller's behalf, and only through DynamoDB.
            function.allow(
                "UseTableKey",
                ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
                [self.tables.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{Stack.of(self).region}.amazonaws.com"}},
            )

    def function_arn(self, role: str) -> str:
        """A control function's ARN from its name: grants between them (and to itself) make no reference cycle."""
        return Stack.of(self).format_arn(
            service="lambda",
            resource="function",
            resource_name=self.config.functions[role].name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def _grant_orchestrator(self) -> None:
        f, t = self.orchestrator, self.tables
        f.allow(
            "OpenTasks",
            ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
            [t.table_arn("tasks"), t.index_arn("tasks")],
        )
        # Due retries are put back in the queue by the run that follows the labourer.
        f.allow("RetryTasks", ["dynamodb:DeleteItem", "dynamodb:Query"], [t.table_arn("retry"), t.index_arn("retry")])
        f.allow("ClosedTasksIndex", ["dynamodb:Query"], [t.index_arn("closed")])
        f.allow(
            "Leases",
            [
                "dynamodb:BatchGetItem",
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
            ],
            [t.table_arn("leases")],
        )
        f.allow("WakeDispatch", ["lambda:InvokeFunction"], [self.function_arn("orchestrator")])
        self._grant_config_and_table_key(f)
        if any(worker.settings.get("health_metrics") for worker in self.config.workers):
            self._grant_health_metrics()

    def _grant_health_metrics(self) -> None:
        """Only when a labourer declares health metrics: otherwise the EcologyManager reads none."""
        health = iam.Policy(
            self,
            "OrchestratorHealthMetrics",
            statements=[
                iam.PolicyStatement(sid="HealthMetrics", actions=["cloudwatch:GetMetricStatistics"], resources=["*"])
            ],
            roles=[self.orchestrator.role],
        )
        Validations.of(health).acknowledge(
            Acknowledgment(id="AwsSolutions-IAM5[Resource::*]", reason=HEALTH_METRICS_REASON)
        )
        # A separate policy: make sure it is attached before the function first runs.
        self.orchestrator.function.node.add_dependency(health)

    def _grant_scavenger(self) -> None:
        f, t = self.scavenger, self.tables
        f.allow(
            "OpenTasks",
            [
                "dynamodb:ConditionCheckItem",
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
            ],
            [t.table_arn("tasks"), t.index_arn("tasks")],
        )
        f.allow(
            "RetryTasks",
            ["dynamodb:ConditionCheckItem", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Query"],
            [t.table_arn("retry"), t.index_arn("retry")],
        )
        # Pending dead-task notifications: rows read whole by key (sosw's index projects none of our fields),
        # their flag cleared once published; the markers that find them live in the leases table.
        f.allow(
            "ClosedTasks",
            [
                "dynamodb:BatchGetItem",
                "dynamodb:ConditionCheckItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
            ],
            [t.table_arn("closed")],
        )
        f.allow("SlotCounters", ["dynamodb:UpdateItem"], [t.table_arn("leases")])
        f.allow("WakeDispatch", ["lambda:InvokeFunction"], [self.function_arn("orchestrator")])
        f.allow(
            "DeadTaskNotices", ["dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Scan"], [t.table_arn("leases")]
        )
        f.allow("PublishDeadTasks", ["sns:Publish"], [self.messaging.dead_tasks.topic_arn])
        # Publishing to a topic encrypted with a customer key needs the key too (SNS encrypts on our behalf).
        f.allow("EncryptDeadTasks", ["kms:Decrypt", "kms:GenerateDataKey"], [self.messaging.key.key_arn])
        self._grant_config_and_table_key(f)

    def _grant_reporters(self) -> None:
        t = self.tables
        wake = [self.function_arn("orchestrator"), self.function_arn("scavenger")]
        for f in (self.worker_assistant, self.failure_handler):
            f.allow("OpenTasks", ["dynamodb:GetItem", "dynamodb:UpdateItem"], [t.table_arn("tasks")])
            # A report frees its task's slot in its own transaction, then may wake dispatch.
            f.allow("SlotCounters", ["dynamodb:UpdateItem"], [t.table_arn("leases")])
            f.allow("WakeDispatch", ["lambda:InvokeFunction"], wake)
            self._grant_config_and_table_key(f)
        # A completion sent with the worker's copy of its task closes it at once: one transaction deletes the
        # open task and puts the closed one (a transaction needs each item's own action).
        self.worker_assistant.allow("CloseCompletedTasks", ["dynamodb:DeleteItem"], [self.tables.table_arn("tasks")])
        self.worker_assistant.allow("ArchiveCompletedTasks", ["dynamodb:PutItem"], [self.tables.table_arn("closed")])

    def allow_workers(self, worker_arns: list[str]) -> None:
        """The configured workers, and no other function: the Orchestrator invokes them, both read their Timeout."""
        if not worker_arns:
            return
        self.orchestrator.allow("InvokeWorkers", ["lambda:InvokeFunction"], worker_arns)
        for f in (self.orchestrator, self.scavenger):
            f.allow("ReadWorkerTimeouts", ["lambda:GetFunctionConfiguration"], worker_arns)

    # ------------------------------------------------------------------ asynchronous invocations

    def _configure_async(self) -> None:
        queue_arn = self.messaging.failed_events.queue_arn
        for name in ("orchestrator", "scavenger"):
            # A scheduled run that failed is not retried: the next scheduled run does the same work.
            self.all[name].configure_async(
                destination_arn=queue_arn, retry_attempts=0, max_event_age=60, destination_actions=["sqs:SendMessage"]
            )
        for name in ("worker_assistant", "failure_handler"):
            # Reports are fenced (a repeated one writes nothing), so Lambda's retries are safe and useful.
            self.all[name].configure_async(
                destination_arn=queue_arn,
                retry_attempts=2,
                max_event_age=6 * 3600,
                destination_actions=["sqs:SendMessage"],
            )
