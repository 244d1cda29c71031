"""The Orchestrator's lease per labourer, and its per-minute invocation count.

Counting running tasks and then invoking is not atomic: two orchestrators running at once could
both see room for N more and invoke 2N. A short conditional lease per labourer makes one of them
skip the labourer for this run. The same row holds the fixed one-minute window of the rate limit
(``max_invocations_per_minute``), updated only by the lease holder.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from sosw.dynamo import Expressions, deserialize_item, error_code, serialize_item

WINDOW_SECONDS = 60
#: How long a lease lasts; a run that follows its labourers renews it while it works.
LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class Lease:
    labourer_id: str
    owner: str
    until: float
    window_start: float
    window_count: int

    def invocations_left(self, limit: int | None, now: float) -> int | None:
        """How many more invocations the rate limit allows now (None: no limit)."""
        if limit is None:
            return None
        if now - self.window_start >= WINDOW_SECONDS:
            return limit
        return max(0, limit - self.window_count)


class LeaseStore:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def acquire(self, labourer_id: str, owner: str, now: float, seconds: float) -> Lease | None:
        """Take the labourer's lease until ``now + seconds``; None if another owner holds it."""
        ex = Expressions()
        held_by_other = Attr("lease_until").gt(now) & Attr("owner").ne(owner)
        condition = ex.condition(Attr("labourer_id").not_exists() | ~held_by_other)
        update = f"SET {ex.name('owner')} = {ex.value(owner)}, {ex.name('lease_until')} = {ex.value(now + seconds)}"
        try:
            response = self.client.update_item(
                TableName=self.table,
                Key=serialize_item({"labourer_id": labourer_id}),
                UpdateExpression=update,
                ConditionExpression=condition,
                ReturnValues="ALL_NEW",
                **ex.params(),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return None
            raise
        row = deserialize_item(response["Attributes"])
        return Lease(
            labourer_id, owner, row["lease_until"], row.get("window_start", 0), int(row.get("window_count", 0))
        )

    def peek(self, labourer_id: str) -> Lease | None:
        """The labourer's lease row as stored (its rate-limit window), without taking it; None if it has none.

        For those who explain dispatch (the console): the holder's view is the one that counts.
        """
        response = self.client.get_item(
            TableName=self.table, Key=serialize_item({"labourer_id": labourer_id}), ConsistentRead=True
        )
        if "Item" not in response:
            return None
        row = deserialize_item(response["Item"])
        return Lease(
            labourer_id,
            str(row.get("owner", "")),
            float(row.get("lease_until", 0)),
            row.get("window_start", 0),
            int(row.get("window_count", 0)),
        )

    def record_invocations(self, lease: Lease, count: int, now: float) -> Lease:
        """Add ``count`` invocations to the current minute's window (starting a new window if it passed).

        Returns the lease with its window as now stored.
        """
        if count <= 0:
            return lease
        ex = Expressions()
        if now - lease.window_start >= WINDOW_SECONDS:
            update = f"SET {ex.name('window_start')} = {ex.value(now)}, {ex.name('window_count')} = {ex.value(count)}"
            after = replace(lease, window_start=now, window_count=count)
        else:
            update = f"ADD {ex.name('window_count')} {ex.value(count)}"
            after = replace(lease, window_count=lease.window_count + count)
        self.client.update_item(
            TableName=self.table,
            Key=serialize_item({"labourer_id": lease.labourer_id}),
            UpdateExpression=update,
            ConditionExpression=ex.condition(Attr("owner").eq(lease.owner)),
            **ex.params(),
        )
        return after

    def flag_wake(self, labourer_id: str, now: float) -> None:
        """Tell the holder of the labourer's lease that work came (it looks once more before letting go)."""
        ex = Expressions()
        self.client.update_item(
            TableName=self.table,
            Key=serialize_item({"labourer_id": labourer_id}),
            UpdateExpression=f"SET {ex.name('wake')} = {ex.value(now)}",
            **ex.params(),
        )

    def release(self, lease: Lease, now: float, settle_seconds: float) -> float | None:
        """Let the next orchestrator in after ``settle_seconds``; returns when a wake-up was last flagged.

        Running counts come from the slot counters, which are exact, so no pause is needed for the cap;
        ``settle_seconds`` remains for those who want one. The wake flag is cleared in the same request.
        """
        ex = Expressions()
        try:
            response = self.client.update_item(
                TableName=self.table,
                Key=serialize_item({"labourer_id": lease.labourer_id}),
                UpdateExpression=f"SET {ex.name('lease_until')} = {ex.value(now + settle_seconds)} "
                f"REMOVE {ex.name('wake')}",
                ConditionExpression=ex.condition(Attr("owner").eq(lease.owner)),
                ReturnValues="UPDATED_OLD",
                **ex.params(),
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return None
        old = deserialize_item(response.get("Attributes") or {})
        return old.get("wake")


class ProcessLeases:
    """Leases kept in this process only: the Orchestrator's stand-in when there is no leases table.

    sosw's own Orchestrator runs on sosw's three tables alone, with no lease and no rate limit; so does ours
    there (see :meth:`sosw.orchestrator.Orchestrator`), with leases that only keep this process's own
    passes in order. Two orchestrators then may both fill a labourer, as two of sosw's may.
    """

    def acquire(self, labourer_id: str, owner: str, now: float, seconds: float) -> Lease | None:
        return Lease(labourer_id, owner, now + seconds, now, 0)

    def record_invocations(self, lease: Lease, count: int, now: float) -> Lease:
        return lease  # no rate limit without the table that keeps its window

    def flag_wake(self, labourer_id: str, now: float) -> None:
        pass

    def release(self, lease: Lease, now: float, settle_seconds: float) -> float | None:
        return None
