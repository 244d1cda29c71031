"""The tasks table's stream, read locally the way Lambda's event source mapping reads it.

DynamoDB Local (and moto) serve the DynamoDB Streams API. A poller per mapping reads every shard from
the latest record on, about four times a second as Lambda's pollers do, keeps the records the mapping's
filter passes (``INSERT``), and invokes the function synchronously with up to ``batch_size`` records at
once, in Lambda's event format. A failed batch is not retried, as the deployed mapping is configured.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Logger

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

    def __init__(self, mapping: StreamMapping, endpoint_url: str, *, interval: float = 0.25) -> None:
        self.mapping = mapping
        self.interval = interval
        self.batches = 0
        self.records = 0
        self._streams = boto3.client("dynamodbstreams", endpoint_url=endpoint_url)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stream-{mapping.table}", daemon=True)
        self._iterators: dict[str, str | None] = {}

    def start(self) -> StreamPoller:
        arn = aws.dynamodb_client().describe_table(TableName=self.mapping.table)["Table"]["LatestStreamArn"]
        self._arn = arn
        self._refresh_shards()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _refresh_shards(self) -> None:
        shards = self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"].get("Shards", [])
        for shard in shards:
            if shard["ShardId"] not in self._iterators:
                self._iterators[shard["ShardId"]] = self._streams.get_shard_iterator(
                    StreamArn=self._arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
                )["ShardIterator"]

    def _run(self) -> None:
        pending: list[dict[str, Any]] = []
        while not self._stop.wait(self.interval):
            try:
                pending.extend(self._poll())
                while pending:
                    batch, pending = pending[: self.mapping.batch_size], pending[self.mapping.batch_size :]
                    self._deliver(batch)
            except Exception:  # the poller goes on, as Lambda's does; a lost batch is left to the schedule
                logger.exception("Reading the tasks stream failed", extra={"table": self.mapping.table})
                pending = []

    def _poll(self) -> list[dict[str, Any]]:
        records = []
        self._refresh_shards()
        for shard, iterator in list(self._iterators.items()):
            if iterator is None:
                continue
            response = self._streams.get_records(ShardIterator=iterator, Limit=1000)
            self._iterators[shard] = response.get("NextShardIterator")
            for record in response.get("Records", []):
                if record.get("eventName") in self.mapping.event_names:
                    records.append(_lambda_record(record, self._arn))
        return records

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        self.batches += 1
        self.records += len(batch)
        aws.lambda_client().invoke(
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
