"""Where bad news goes: the dead-task topic, the alarm topic and the failed-events queue.

- Dead tasks: the Scavenger publishes one message per task it closes as dead
  (``SOSW_DEAD_LETTER_TOPIC_ARN``).
- Alarms: CloudWatch alarms publish here; an email subscription is optional.
- Failed events: asynchronous invocations of the control functions that failed for good, and schedule
  events EventBridge could not deliver. Nothing should ever land here, so an alarm watches it.

Both topics are encrypted with one customer-managed key: CloudWatch can't publish to a topic
encrypted with the AWS-managed SNS key, and its key policy can't be changed.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config import StackConfig

__all__ = ["Messaging"]


class Messaging(Construct):
    """``messaging.dead_tasks``, ``messaging.alarms``, ``messaging.failed_events`` and ``messaging.key``."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.key = self._build_key()
        self.dead_tasks = self._build_topic("DeadTasks", f"sosw {config.stage}: tasks closed as dead")
        self.alarms = self._build_topic("Alarms", f"sosw {config.stage}: alarms")
        self.failed_events = self._build_failed_events_queue()
        if config.alarm_email:
            self._subscribe_email(config.alarm_email)

    def _build_key(self) -> kms.Key:
        key = kms.Key(
            self,
            "Key",
            description=f"sosw {self.config.stage}: encrypts the dead-task and alarm topics",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN if self.config.production else RemovalPolicy.DESTROY,
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            )
        )
        return key

    def _build_topic(self, construct_id: str, display_name: str) -> sns.Topic:
        return sns.Topic(self, construct_id, display_name=display_name, master_key=self.key, enforce_ssl=True)

    def _build_failed_events_queue(self) -> sqs.Queue:
        queue = sqs.Queue(
            self,
            "FailedEvents",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        reason = (
            "This queue is itself the dead-letter destination (Lambda on-failure destination and EventBridge "
            "target DLQ) of the control functions; a DLQ of a DLQ would only move the same records again."
        )
        Validations.of(queue).acknowledge(Acknowledgment(id="AwsSolutions-SQS3", reason=reason))
        Validations.of(queue).acknowledge(Acknowledgment(id="Serverless-SQSRedrivePolicy", reason=reason))
        return queue

    def _subscribe_email(self, email: str) -> None:
        subscription = sns.Subscription(
            self,
            "AlarmEmail",
            topic=self.alarms,
            protocol=sns.SubscriptionProtocol.EMAIL,
            endpoint=email,
        )
        Validations.of(subscription).acknowledge(
            Acknowledgment(
                id="Serverless-SNSRedrivePolicy",
                reason="An email subscription to alarm notices: SNS retries email delivery itself, and every "
                "notice stays visible as the alarm's state and history in CloudWatch.",
            )
        )
