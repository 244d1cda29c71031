"""What wakes dispatch besides the schedule: new rows of the tasks and retry tables, through their streams.

A new task may start at once; a task put to wait for a retry or a delay (a producer's delayed task included)
must start at its due time, so the run it wakes waits for that. The Orchestrator reads each stream through
an event source mapping that passes only INSERT records, in
batches of up to 100, at once (no batching window: a new task should start within a second). The
handler relays each batch to a run of its own, so the mapping never waits on a long run, and a failed
batch is not retried (``retry_attempts=0``): the minute schedule drains whatever a lost wake-up left.
Adopted sosw tables have no stream; reports and the schedule wake dispatch there.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.functions import ControlFunctions
from infra.tables import DISPATCH_STREAMS, SoswTables

__all__ = ["LIST_STREAMS_REASON", "STREAM_BATCH_SIZE", "Dispatch"]

#: The event source mapping's settings, which the local stack's stream poller uses too.
STREAM_BATCH_SIZE = 100
STREAM_BATCHING_WINDOW_SECONDS = 0
NO_DESTINATION_REASON = (
    "A failed batch of new-task records is dropped on purpose: it only wakes dispatch, and the minute "
    "schedule dispatches those tasks anyway; a failure record would carry nothing to act on."
)
LIST_STREAMS_REASON = (
    "Reading a DynamoDB stream from Lambda needs dynamodb:ListStreams, which supports no resource-level "
    "permissions (Service Authorization Reference); it lists stream ARNs only."
)


class Dispatch(Construct):
    """``dispatch.mappings``: the streams' event source mappings on the Orchestrator, by table role (created
    tables only: an adopted sosw table has no stream)."""

    def __init__(self, scope: Construct, construct_id: str, *, tables: SoswTables, functions: ControlFunctions):
        super().__init__(scope, construct_id)
        streams = {role: table for role in DISPATCH_STREAMS if (table := tables.created(role)) is not None}
        self.mappings = self._build_mappings(streams, tables, functions) if streams else {}

    def _build_mappings(
        self, streams: dict[str, dynamodb.Table], tables: SoswTables, functions: ControlFunctions
    ) -> dict[str, lambda_.EventSourceMapping]:
        orchestrator = functions.orchestrator
        arns = [table.table_stream_arn for table in streams.values()]
        assert all(arns)
        orchestrator.allow(
            "DispatchStreams",
            ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
            arns,  # type: ignore[arg-type]
        )
        list_streams = iam.Policy(
            self,
            "ListStreams",
            statements=[iam.PolicyStatement(sid="ListStreams", actions=["dynamodb:ListStreams"], resources=["*"])],
            roles=[orchestrator.role],
        )
        Validations.of(list_streams).acknowledge(
            Acknowledgment(id="AwsSolutions-IAM5[Resource::*]", reason=LIST_STREAMS_REASON)
        )
        if tables.key is not None:
            orchestrator.allow("ReadStreamsKey", ["kms:Decrypt"], [tables.key.key_arn])
        mappings = {}
        for role, table in streams.items():
            mapping = lambda_.EventSourceMapping(
                self,
                {"tasks": "NewTasks", "retry": "WaitingTasks"}[role],
                target=orchestrator.function,
                event_source_arn=table.table_stream_arn,
                starting_position=lambda_.StartingPosition.LATEST,
                batch_size=STREAM_BATCH_SIZE,
                max_batching_window=Duration.seconds(STREAM_BATCHING_WINDOW_SECONDS),
                retry_attempts=0,
                filters=[lambda_.FilterCriteria.filter({"eventName": lambda_.FilterRule.is_equal("INSERT")})],
            )
            Validations.of(mapping).acknowledge(
                Acknowledgment(id="Serverless-LambdaEventSourceMappingDestination", reason=NO_DESTINATION_REASON)
            )
            # The role's grants must exist before Lambda validates the mapping.
            mapping.node.add_dependency(orchestrator.role)
            mapping.node.add_dependency(list_streams)
            mappings[role] = mapping
        return mappings
