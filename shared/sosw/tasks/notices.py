"""Pending dead-task notifications: one marker item per dead task whose notification is not yet published.

The markers live in the stack's own leases table, under the key ``notify#<task_id>`` (a labourer id can't
hold ``#``, so they never meet a lease). A marker is written in the very transaction that closes the task
as dead, and deleted once its notification is published (or the task is redriven). Finding the pending
notifications reads the markers alone: the cost stays flat however many dead tasks pile up, and nothing
depends on what the closed-tasks index projects (sosw's projects none of this project's fields).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from boto3.dynamodb.conditions import Attr

from sosw.dynamo import Expressions, deserialize_item, serialize_item
from sosw.schema import table_schemas
from sosw.tasks.context import TaskContext

__all__ = ["MARKER_PREFIX", "DeadNotices"]

MARKER_PREFIX = "notify#"


class DeadNotices:
    """Writes, finds and clears the markers of pending dead-task notifications."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        leases = table_schemas(ctx.config)["leases"]
        self.table = leases.name
        self._key = leases.hash_key.name

    def key(self, task_id: str) -> dict[str, Any]:
        return {self._key: f"{MARKER_PREFIX}{task_id}"}

    def put_item(self, labourer_id: str, task_id: str, closed_at: float) -> dict[str, Any]:
        """The transaction item that marks the task's notification pending (added to the closing transaction)."""
        marker = {**self.key(task_id), "task_id": task_id, "notify_labourer_id": labourer_id, "closed_at": closed_at}
        return {"Put": {"TableName": self.table, "Item": serialize_item(marker)}}

    def delete_item(self, task_id: str) -> dict[str, Any]:
        """The transaction item that clears the task's marker (a redrive: the task is no longer dead)."""
        return {"Delete": {"TableName": self.table, "Key": serialize_item(self.key(task_id))}}

    def pending(self, labourer_id: str) -> Iterator[dict[str, Any]]:
        """The labourer's markers (``task_id``, ``closed_at``), read consistently; no dead task is read."""
        ex = Expressions()
        condition = Attr(self._key).begins_with(MARKER_PREFIX) & Attr("notify_labourer_id").eq(labourer_id)
        kwargs = {"TableName": self.table, "FilterExpression": ex.condition(condition), "ConsistentRead": True}
        for page in self.ctx.dynamodb.get_paginator("scan").paginate(**kwargs, **ex.params()):
            for item in page.get("Items", []):
                yield deserialize_item(item)

    def clear(self, task_id: str) -> None:
        """The notification was published: forget the marker (deleting one that is gone is a no-op)."""
        self.ctx.dynamodb.delete_item(TableName=self.table, Key=serialize_item(self.key(task_id)))
