"""The jobs table: one header item per job, and its counter items, sharded.

The header (key: the job id) holds what the job is (labourer, total, tolerance, state, where its creation
stands). Closed tasks are counted on ``job_counter_shards`` counter items (key ``<job_id>#<shard>``), each
updated by the very transaction that closes a task: one job closing a thousand tasks a second writes each
item about ``1000 / shards`` times a second instead of serialising every close on one hot item. Reading
the counts is one BatchGetItem of the shards.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from boto3.dynamodb.conditions import Attr, ConditionBase, Key
from botocore.exceptions import ClientError

from sosw.dynamo import Expressions, batch_get, error_code, query, serialize_item
from sosw.jobs.model import Job, JobCounts, counter_key
from sosw.tasks.context import TaskContext
from sosw.tasks.model import CLOSE_OUTCOMES as CLOSE_COUNTERS

__all__ = ["JobStore"]

#: The index's partition: "open" while a job is active or its end event unpublished, then "done".
OPEN, DONE = "open", "done"


class JobStore:
    """Reads and conditional writes of the jobs table."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx

    @property
    def table(self) -> str:
        return self.ctx.config["sosw_jobs_table"]

    # ------------------------------------------------------------------ the header

    def put_header(self, item: Mapping[str, Any]) -> bool:
        """Create the header if no job has this id; False (nothing written) if one has."""
        ex = Expressions()
        try:
            self.ctx.dynamodb.put_item(
                TableName=self.table,
                Item=serialize_item(item),
                ConditionExpression=ex.condition(Attr("job_id").not_exists()),
                **ex.params(),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def get(self, job_id: str) -> Job | None:
        item = self.ctx.get_item(self.table, {"job_id": job_id})
        return Job.from_item(item) if item else None

    def update(
        self,
        job_id: str,
        sets: Mapping[str, Any] | None = None,
        *,
        removes: Sequence[str] = (),
        condition: ConditionBase | None = None,
    ) -> bool:
        """A conditional update of the header; False (nothing written) when ``condition`` does not hold."""
        ex = Expressions()
        parts = []
        if sets:
            parts.append("SET " + ", ".join(f"{ex.name(k)} = {ex.value(v)}" for k, v in sets.items()))
        if removes:
            parts.append("REMOVE " + ", ".join(ex.name(k) for k in removes))
        exists = Attr("job_id").exists()
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "Key": serialize_item({"job_id": job_id}),
            "UpdateExpression": " ".join(parts),
            "ConditionExpression": ex.condition(exists if condition is None else exists & condition),
        }
        kwargs.update(ex.params())
        try:
            self.ctx.dynamodb.update_item(**kwargs)
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def list(self, which: str = OPEN, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Job headers from the index, newest first (eventually consistent: read the header again to act)."""
        return query(
            self.ctx.dynamodb,
            table=self.table,
            index=self.ctx.config["sosw_jobs_index"],
            key_condition=Key("job_list").eq(which),
            ascending=False,
            limit=limit,
        )

    # ------------------------------------------------------------------ the counters

    def counts(self, job_id: str, shards: int) -> JobCounts:
        """The job's closed tasks by outcome: its counter items summed (one strongly consistent BatchGetItem)."""
        keys = [{"job_id": counter_key(job_id, s)} for s in range(shards)]
        totals = dict.fromkeys(CLOSE_COUNTERS, 0)
        for item in batch_get(self.ctx.dynamodb, self.table, keys, **self.ctx.retry_settings()):
            for name in CLOSE_COUNTERS:
                totals[name] += int(item.get(name, 0))
        return JobCounts(**totals)

    def counter_items(self, row: Mapping[str, Any], outcome: str, delta: int) -> list[dict[str, Any]]:
        """The close hook: ``ADD <outcome> <delta>`` on the task's counter item, if the task belongs to a job."""
        job_id, shard = row.get("job_id"), row.get("job_shard")
        if job_id is None or shard is None or outcome not in CLOSE_COUNTERS:
            return []
        ex = Expressions()
        return [
            {
                "Update": {
                    "TableName": self.table,
                    "Key": serialize_item({"job_id": counter_key(str(job_id), int(shard))}),
                    "UpdateExpression": f"ADD {ex.name(outcome)} {ex.value(delta)}",
                    **ex.params(),
                }
            }
        ]
