"""Jobs: the bucket for job files, the Scheduler function, and the rights jobs need elsewhere.

- **Scheduler** (``lambdas/scheduler``): invoked asynchronously with sosw's job event, or by EventBridge
  when a ``.json`` (sosw job) or ``.jsonl`` (payloads, under ``<labourer>/``) file is uploaded to the jobs
  bucket. It reads the job, writes the job's header and creates its tasks (conditional puts checked
  against the retry and closed tables, the greenfield index for the queue's end), and invokes itself to go
  on when its time runs out. Lambda retries it twice: a run killed by its timeout resumes.
- **Scavenger**: follows the jobs after its own work (the counters, the headers, the sweep of a failed
  job's tasks) and publishes their end on EventBridge, to the configured bus only.
- **WorkerAssistant**: closes a completed task in one transaction, which updates the job's counter item:
  it may update counter items only (their keys hold ``#``, a job's header key never does).

The bucket sends its events to EventBridge through the bucket's own notification configuration (no
custom resource, hence no extra Lambda of CDK's in the stack).
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, ArnFormat, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.config import StackConfig
from infra.functions import ControlFunctions
from infra.lambda_function import SoswFunction
from infra.layer import SharedLayer
from infra.messaging import Messaging
from infra.parameter import ConfigParameter
from infra.tables import SoswTables

__all__ = ["Jobs"]

#: Job files are inputs, read once by the Scheduler: kept this long for a look afterwards.
JOB_FILE_DAYS = 30


class Jobs(Construct):
    """``jobs.bucket``, ``jobs.scheduler`` (a SoswFunction) and ``jobs.uploads`` (the EventBridge rule)."""

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
        functions: ControlFunctions,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.tables = tables
        self.functions = functions
        self.bucket = self._build_bucket()
        self.scheduler = self._build_scheduler(layer, parameter)
        self.uploads = self._build_upload_rule(messaging)
        self._grant_scheduler()
        self._grant_tracker()
        self._grant_counter_updates()
        self.scheduler.configure_async(
            destination_arn=messaging.failed_events.queue_arn,
            retry_attempts=2,  # a run killed by its timeout is retried with the same event, and resumes
            max_event_age=6 * 3600,
            destination_actions=["sqs:SendMessage"],
        )

    # ------------------------------------------------------------------ building

    def _build_bucket(self) -> s3.Bucket:
        bucket = s3.Bucket(
            self,
            "JobFiles",
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            lifecycle_rules=[s3.LifecycleRule(expiration=Duration.days(JOB_FILE_DAYS))],
            removal_policy=RemovalPolicy.RETAIN if self.config.production else RemovalPolicy.DESTROY,
        )
        # Uploads reach EventBridge from the bucket's own configuration: CDK's event_bridge_enabled would
        # add a custom resource (a Lambda of its own, with its own role) to set the same property.
        cfn = bucket.node.default_child
        cfn.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(  # type: ignore[union-attr]
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(event_bridge_enabled=True)
        )
        Validations.of(bucket).acknowledge(
            Acknowledgment(
                id="AwsSolutions-S1",
                reason="Job files are inputs written by the user and read once by the Scheduler, whose logs "
                "record every file it reads; CloudTrail data events can log object access where required.",
            )
        )
        return bucket

    def _build_scheduler(self, layer: SharedLayer, parameter: ConfigParameter) -> SoswFunction:
        settings = self.config.functions["scheduler"]
        return SoswFunction(
            self,
            "Scheduler",
            config=self.config,
            layer=layer,
            function_name=settings.name,
            code=settings.code,
            environment={"SOSW_CONFIG_PARAMETER": parameter.name, **self.functions.common_environment()},
            memory_size=settings.memory_size,
            timeout=settings.timeout,
            reserved_concurrency=settings.reserved_concurrency,
            description="sosw Scheduler: a job (sosw's job event or an uploaded job file) becomes its tasks",
        )

    def _build_upload_rule(self, messaging: Messaging) -> events.Rule:
        rule = events.Rule(
            self,
            "Uploads",
            description=f"sosw {self.config.stage}: a job file uploaded to the jobs bucket runs the Scheduler",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [self.bucket.bucket_name]},
                    "object": {"key": [{"suffix": ".json"}, {"suffix": ".jsonl"}]},
                },
            ),
        )
        rule.add_target(
            targets.LambdaFunction(
                self.scheduler.function,
                dead_letter_queue=messaging.failed_events,
                retry_attempts=2,
                max_event_age=Duration.hours(2),
            )
        )
        return rule

    # ------------------------------------------------------------------ grants

    def _jobs_arns(self) -> list[str]:
        return [self.tables.table_arn("jobs"), self.tables.index_arn("jobs")]

    def _grant_scheduler(self) -> None:
        f, t = self.scheduler, self.tables
        f.allow("ReadConfig", ["ssm:GetParameter"], [self.functions.parameter.parameter_arn])
        f.allow("Jobs", ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"], [t.table_arn("jobs")])
        f.allow(
            "CreateTasks",
            ["dynamodb:ConditionCheckItem", "dynamodb:PutItem", "dynamodb:Query"],
            [t.table_arn("tasks"), t.index_arn("tasks")],
        )
        f.allow("TaskIdsTaken", ["dynamodb:ConditionCheckItem"], [t.table_arn("retry"), t.table_arn("closed")])
        f.allow("ReadJobFiles", ["s3:GetObject"], [self.bucket.arn_for_objects("*")])
        stack = Stack.of(self)
        bucket_id = stack.resolve(stack.get_logical_id(self.bucket.node.default_child))  # type: ignore[arg-type]
        Validations.of(f.role.node.find_child("DefaultPolicy")).acknowledge(
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/*]",
                reason="The Scheduler reads the job files users upload to this bucket, under names it can't know "
                "beforehand: every object of this one bucket, read-only (s3:GetObject).",
            )
        )
        # By name, not by the function's ARN attribute: a role naming its own function would be a cycle.
        own_arn = Stack.of(self).format_arn(
            service="lambda",
            resource="function",
            resource_name=self.scheduler_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        f.allow("ContinueItself", ["lambda:InvokeFunction"], [own_arn])
        if self.tables.key is not None:
            f.allow(
                "UseTableKey",
                ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"],
                [self.tables.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{Stack.of(self).region}.amazonaws.com"}},
            )

    def _grant_tracker(self) -> None:
        """The Scavenger follows the jobs: counters and headers, the sweep's reads, and the end event."""
        f, t = self.functions.scavenger, self.tables
        f.allow(
            "Jobs",
            ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
            self._jobs_arns(),
        )
        f.allow(
            "SweepJobTasks",
            ["dynamodb:BatchGetItem"],
            [t.table_arn("tasks"), t.table_arn("retry"), t.table_arn("closed")],
        )
        bus = self.config.task_manager_config().get("job_event_bus") or "default"
        bus_arn = Stack.of(self).format_arn(service="events", resource="event-bus", resource_name=bus)
        f.allow("PublishJobEvents", ["events:PutEvents"], [bus_arn])

    def _grant_counter_updates(self) -> None:
        """A completion closed by the WorkerAssistant updates one of the job's counter items, never its header."""
        self.functions.worker_assistant.allow(
            "JobCounters",
            ["dynamodb:UpdateItem"],
            [self.tables.table_arn("jobs")],
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["*#*"]}},
        )

    @property
    def scheduler_name(self) -> str:
        return self.config.functions["scheduler"].name
