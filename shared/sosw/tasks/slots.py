"""Running counts that are exact without the index: one counter item per labourer.

The greenfield index is eventually consistent, so a running count read from it right after a claim
may miss that claim, and refilling slots within a second would then pass the cap. Instead, every
request that makes a task occupy a slot (the claim) or free it (a report, an expiry, a released claim)
carries an update of the labourer's counter in the same transaction: the counter moves exactly when
the task does. The claim's update is conditional on the count being below the cap, so the cap holds
with any number of orchestrators, whatever the index shows.

The counters live in the stack's own leases table (adopted sosw tables are never changed), under the
key ``<labourer_id>#slots``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from sosw.dynamo import Expressions, deserialize_item, error_code, serialize_item, transact_write
from sosw.tasks.context import TaskContext

__all__ = ["COUNTER_ATTRIBUTE", "SlotCounters", "counter_key", "occupies_slot"]

COUNTER_ATTRIBUTE = "running"

logger = Logger(child=True)


def counter_key(labourer_id: str) -> dict[str, str]:
    return {"labourer_id": f"{labourer_id}#slots"}


def occupies_slot(ctx: TaskContext, task: Mapping[str, Any]) -> bool:
    """Invoked and not yet reported (as the copy shows it): the task holds one of its labourer's slots."""
    _ = ctx.field
    greenfield = task.get(_("greenfield"))
    invoked = isinstance(greenfield, (int, float)) and greenfield > ctx.now()
    return invoked and _("completed_at") not in task and _("failed_at") not in task


class SlotCounters:
    """Builds the counter updates that ride in claim and close transactions, and reads the counters."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx

    def take_item(self, labourer_id: str, cap: int | None, count: int = 1) -> dict[str, Any]:
        """A transaction item taking ``count`` slots; with ``cap``, refused unless they all fit under it."""
        ex = Expressions()
        entry: dict[str, Any] = {
            "TableName": self.ctx.leases_table,
            "Key": serialize_item(counter_key(labourer_id)),
            "UpdateExpression": f"ADD {ex.name(COUNTER_ATTRIBUTE)} {ex.value(count)}",
        }
        if cap is not None:
            # Below zero, the counter undercounts (see running()): no claim until a read sets it to zero
            counter = Attr(COUNTER_ATTRIBUTE)
            fits = counter.gte(0) & counter.lte(cap - count)
            entry["ConditionExpression"] = ex.condition(counter.not_exists() | fits)
        return {"Update": {**entry, **ex.params()}}

    def free_item(self, labourer_id: str) -> dict[str, Any]:
        """A transaction item freeing one slot. Unconditional: the task's own condition makes it happen once."""
        ex = Expressions()
        return {
            "Update": {
                "TableName": self.ctx.leases_table,
                "Key": serialize_item(counter_key(labourer_id)),
                "UpdateExpression": f"ADD {ex.name(COUNTER_ATTRIBUTE)} {ex.value(-1)}",
                **ex.params(),
            }
        }

    def transact(self, items: list[dict[str, Any]]) -> None:
        """Write a claim's or a close's transaction, its counter updates included.

        sosw users who run this package on sosw's own three tables, without the stack, have no leases
        table: their reports and claims still go through, uncounted (the stack's Orchestrator, which
        needs the counters, needs that table anyway).
        """
        if self.ctx.counters_missing:
            items = [i for i in items if not self._is_counter(i)]
        try:
            transact_write(self.ctx.dynamodb, items, **self.ctx.retry_settings())
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException" or not any(self._is_counter(i) for i in items):
                raise
            logger.warning("No leases table: slots are not counted", extra={"table": self.ctx.leases_table})
            self.ctx.counters_missing = True
            transact_write(
                self.ctx.dynamodb, [i for i in items if not self._is_counter(i)], **self.ctx.retry_settings()
            )

    def _is_counter(self, item: dict[str, Any]) -> bool:
        update = item.get("Update") or {}
        key = (update.get("Key") or {}).get("labourer_id", {}).get("S", "")
        return update.get("TableName") == self.ctx.leases_table and key.endswith("#slots")

    def running(self, labourer_ids: Iterable[str]) -> dict[str, int]:
        """The counters, read strongly consistent (one request for up to 100 labourers); 0 where none is kept.

        A count below zero (tasks claimed before the counters existed, then closed: an upgrade) reads as 0 and
        is set to 0, on condition that it is unchanged: claims refuse a counter below zero, so the cap never
        counts those closes as free slots, and a pass that reads the counters sets them right first.
        """
        ids = list(dict.fromkeys(labourer_ids))
        counts = dict.fromkeys(ids, 0)
        for start in range(0, len(ids), 100):
            keys = [serialize_item(counter_key(i)) for i in ids[start : start + 100]]
            request = {self.ctx.leases_table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                response = self.ctx.dynamodb.batch_get_item(RequestItems=request)
                for raw in response.get("Responses", {}).get(self.ctx.leases_table, []):
                    item = deserialize_item(raw)
                    labourer_id, value = item["labourer_id"].rsplit("#", 1)[0], int(item.get(COUNTER_ATTRIBUTE, 0))
                    if value < 0:
                        self._set_to_zero(labourer_id, value)
                    counts[labourer_id] = max(0, value)
                request = response.get("UnprocessedKeys") or {}
        return counts

    def _set_to_zero(self, labourer_id: str, seen: int) -> None:
        ex = Expressions()
        counter = ex.name(COUNTER_ATTRIBUTE)
        try:
            self.ctx.dynamodb.update_item(
                TableName=self.ctx.leases_table,
                Key=serialize_item(counter_key(labourer_id)),
                UpdateExpression=f"SET {counter} = {ex.value(0)}",
                ConditionExpression=ex.condition(Attr(COUNTER_ATTRIBUTE).eq(seen)),
                **ex.params(),
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return  # moved meanwhile: the next read looks again
        logger.warning("Slot counter below zero set to 0", extra={"labourer_id": labourer_id, "counter": seen})
