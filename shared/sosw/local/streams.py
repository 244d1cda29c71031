"""The tasks table's stream, read locally the way Lambda's event source mapping reads it.

DynamoDB Local (and moto) serve the DynamoDB Streams API. A poller per mapping reads every shard from
the latest record on (a shard that appears later, from its start), about four times a second as Lambda's
pollers do, keeps the records the mapping's filter passes (``INSERT``), and invokes the function
synchronously with up to ``batch_size`` records at once, in Lambda's event format. A failed batch is not
retried, as the deployed mapping is configured.

DynamoDB Local gives a transaction's ConditionCheck on the table a stream sequence number but writes no
record for it; an iterator that points at that number (one returned by a read that found nothing new)
then fails with TrimmedDataAccessException. The poller resumes after the last record it read (or from the
shard's start if it read none), so it neither stops nor delivers a record twice.

Like the event source mapping, the poller waits for the function: when every process of the function is
busy (the Orchestrator's reserved concurrency is in use), the batch waits for one, and so does the shard,
for as long as the function may run; it is not dropped after the 15 s that asynchronous Invokes wait.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config

from sosw import aws

__all__ = ["StreamMapping", "StreamPoller"]

logger = Logger(child=True)


@dataclass(frozen=True)
class StreamMapping:
    """An event source mapping of the template: which table's stream reaches which function, and how."""

    table: str
    function: str
    batch_size: int = 100
    batching_window: float = 0.0
    event_names: tuple[str, ...] = ("INSERT",)


class StreamPoller:
    """``StreamPoller(mapping, endpoint).start()`` ... ``.stop()``; ``.batches`` counts the invocations."""

    def __init__(
        self, mapping: StreamMapping, endpoint_url: str, *, interval: float = 0.25, invoke_timeout: float = 330.0
    ) -> None:
        self.mapping = mapping
        self.interval = interval
        self.batches = 0
        self.records = 0
        self.errors = 0  # polls or deliveries that failed (their records are dropped, as configured)
        self._lambda = boto3.client(
            "lambda", config=aws.LAMBDA_INVOKE_CONFIG.merge(Config(read_timeout=invoke_timeout))
        )
        self._streams = boto3.client("dynamodbstreams", endpoint_url=endpoint_url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream-{mapping.table}", daemon=True)
        self._iterators: dict[str, str | None] = {}
        self._last: dict[str, str | None] = {}  # per shard: the sequence number of the last record read

    def start(self) -> StreamPoller:
        arn = aws.dynamodb_client().describe_table(TableName=self.mapping.table)["Table"]["LatestStreamArn"]
        self._arn = arn
        self._refresh_shards(initial=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _iterator(self, shard: str, kind: str, after: str | None = None) -> str:
        extra = {"SequenceNumber": after} if after else {}
        return self._streams.get_shard_iterator(StreamArn=self._arn, ShardId=shard, ShardIteratorType=kind, **extra)[
            "ShardIterator"
        ]

    def _refresh_shards(self, initial: bool = False) -> None:
        shards = self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"].get("Shards", [])
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id in self._iterators:
                continue
            self._last[shard_id] = None
            self._iterators[shard_id] = self._iterator(shard_id, "TRIM_HORIZON")
            if initial:  # what is there already is not new: read past it, remembering where it ends
                while self._iterators[shard_id] and self._read(shard_id):
                    pass

    def _read(self, shard: str) -> list[dict[str, Any]]:
        """One GetRecords on the shard; resumes after the last record read if DynamoDB Local refuses the iterator."""
        iterator = self._iterators[shard]
        try:
            response = self._streams.get_records(ShardIterator=iterator, Limit=1000)
        except (
            self._streams.exceptions.TrimmedDataAccessException,
            self._streams.exceptions.ExpiredIteratorException,
        ):
            last = self._last[shard]
            iterator = (
                self._iterator(shard, "AFTER_SEQUENCE_NUMBER", last) if last else self._iterator(shard, "TRIM_HORIZON")
            )
            response = self._streams.get_records(ShardIterator=iterator, Limit=1000)
        self._iterators[shard] = response.get("NextShardIterator")
        records = response.get("Records", [])
        if records:
            self._last[shard] = records[-1]["dynamodb"]["SequenceNumber"]
        return records

    def _run(self) -> None:
        pending: list[dict[str, Any]] = []
        while not self._stop.wait(self.interval):
            try:
                pending.extend(self._poll())
                while pending:
                    batch, pending = pending[: self.mapping.batch_size], pending[self.mapping.batch_size :]
                    self._deliver(batch)
            except Exception:  # the poller goes on, as Lambda's does; a lost batch is left to the schedule
                self.errors += 1
                logger.exception("Reading the tasks stream failed", extra={"table": self.mapping.table})
                pending = []

    def _poll(self) -> list[dict[str, Any]]:
        records = []
        self._refresh_shards()
        for shard, iterator in list(self._iterators.items()):
            if iterator is None:
                continue
            for record in self._read(shard):
                if record.get("eventName") in self.mapping.event_names:
                    records.append(_lambda_record(record, self._arn))
        return records

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        self.batches += 1
        self.records += len(batch)
        self._lambda.invoke(
            FunctionName=self.mapping.function,
            InvocationType="RequestResponse",
            Payload=json.dumps({"Records": batch}, default=str),
        )


def _lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A stream record as the event source mapping hands it to Lambda."""
    dynamodb = dict(record.get("dynamodb", {}))
    created = dynamodb.get("ApproximateCreationDateTime")
    if created is not None and not isinstance(created, (int, float)):
        dynamodb["ApproximateCreationDateTime"] = created.timestamp()
    return {
        "eventID": record.get("eventID"),
        "eventName": record.get("eventName"),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", "us-east-1"),
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }
