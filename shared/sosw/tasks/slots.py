"""Running counts that are exact without the index, with no item that every claim and close writes.

The greenfield index is eventually consistent, so a running count read from it right after a claim may
miss that claim, and refilling slots within a second would then pass the cap. Instead, every request that
makes a task occupy a slot (a claim) or free it (a report, an expiry, a released claim) carries a counter
update in the same transaction: the counts move exactly when the task does.

Claims and closes write different items, so that a busy labourer's closes don't queue on one:

- ``<labourer_id>#slots``, attribute ``running``: every claim adds the slots it takes. Only claims write it
  (one transaction a refill for the Orchestrator), and the previous release's closes (``ADD running -1``),
  which stay correct.
- ``<labourer_id>#slots#<k>``, attribute ``freed``, for ``k`` below the labourer's shard count: a close adds
  one to the shard of its task, unconditionally (the task's own condition makes the close happen once).
  Shards spread the closes as the jobs' counters spread theirs; a job's task frees the shard of its job
  counter (``job_shard``), so two closes that meet on one meet on both, and the odds don't double.

Running = ``running`` - sum(``freed``). A claim is conditional on ``running + n <= cap + F``, with F a sum of
the shards read before (strongly consistent): ``freed`` only grows, so an F read earlier is at most the true
sum, and the condition only gets stricter. The cap holds with any number of claimers, whatever they read.

The shard count follows the cap, ``min(cap, SHARDS_MAX)`` (99): the odds that two closes meet on a shard go
with (closes a second per shard) x (a transaction's time), and closes a second go with the cap. Closes compute
their shard from the cap they know, so readers must never leave out a shard that a close with another config
wrote: the first read of a labourer (each run's first pass) reads all ``SHARDS_MAX`` shards, and the highest
one in use is recorded on the ``#slots`` item by the next claim, in a number set that only grows
(``shard_counts``); later reads read ``max(their own count, the largest recorded)``.

The counters live in the stack's own leases table (adopted sosw tables are never changed).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from sosw.dynamo import (
    Expressions,
    batch_get,
    call_with_retries,
    deserialize_item,
    error_code,
    serialize_item,
    transact_write,
)
from sosw.errors import UnknownLabourerError
from sosw.labourer import Labourer
from sosw.tasks.context import TaskContext

__all__ = [
    "COUNTER_ATTRIBUTE",
    "FREED_ATTRIBUTE",
    "SHARDS_MAX",
    "SlotCount",
    "SlotCounters",
    "counter_key",
    "occupies_slot",
    "running_from_items",
    "shard_count",
    "shard_key",
]

COUNTER_ATTRIBUTE = "running"
FREED_ATTRIBUTE = "freed"
SHARDS_ATTRIBUTE = "shard_counts"  # a number set: ADD only makes it grow
#: With the ``#slots`` item, one BatchGetItem (100 keys) reads a labourer's counts.
SHARDS_MAX = 99

logger = Logger(child=True)


def counter_key(labourer_id: str) -> dict[str, str]:
    return {"labourer_id": f"{labourer_id}#slots"}


def shard_key(labourer_id: str, shard: int) -> dict[str, str]:
    return {"labourer_id": f"{labourer_id}#slots#{shard}"}


def shard_count(cap: int | None) -> int:
    """How many ``freed`` shards a labourer of this cap spreads its closes over."""
    return max(1, min(SHARDS_MAX, int(cap or 1)))


def running_from_items(items: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Tasks holding a slot per labourer id, from the leases table's items as read (a scan, in a check)."""
    counts: dict[str, int] = {}
    for item in items:
        labourer_id, _, rest = str(item["labourer_id"]).partition("#slots")
        if rest == "":
            counts[labourer_id] = counts.get(labourer_id, 0) + int(item.get(COUNTER_ATTRIBUTE, 0))
        elif rest.startswith("#") and rest[1:].isdigit():
            counts[labourer_id] = counts.get(labourer_id, 0) - int(item.get(FREED_ATTRIBUTE, 0))
    return counts


def occupies_slot(ctx: TaskContext, task: Mapping[str, Any]) -> bool:
    """Invoked and not yet reported (as the copy shows it): the task holds one of its labourer's slots."""
    _ = ctx.field
    greenfield = task.get(_("greenfield"))
    invoked = isinstance(greenfield, (int, float)) and greenfield > ctx.now()
    return invoked and _("completed_at") not in task and _("failed_at") not in task


@dataclass(frozen=True)
class SlotCount:
    """A labourer's counters as read: ``claimed`` (the ``running`` attribute) and ``freed`` (the shards' sum)."""

    claimed: int
    freed: int
    shards: int  # shards summed into ``freed``
    exists: bool
    recorded: int = 0  # the largest shard count recorded on the ``#slots`` item
    used: int = 0  # shards in use (the highest with a freed count, plus one), where all of them were read
    in_use: tuple[int, ...] = ()  # the shards read that hold a freed count

    @property
    def running(self) -> int:
        return self.claimed - self.freed


class SlotCounters:
    """Builds the counter updates that ride in claim and close transactions, and reads the counters."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        #: The last counts read per labourer: ``freed`` only grows, so a claim may condition on an old sum.
        self.seen: dict[str, SlotCount] = {}

    def _cap_of(self, labourer_id: str) -> int | None:
        try:
            return self.ctx.get_labourer(labourer_id).max_simultaneous_invocations
        except UnknownLabourerError:  # a labourer the config doesn't list (a seed API caller's object): one shard
            return None

    def shards_of(self, labourer_id: str) -> int:
        return shard_count(self._cap_of(labourer_id))

    def take_item(self, labourer_id: str, cap: int | None, count: int = 1) -> dict[str, Any]:
        """A transaction item taking ``count`` slots; with ``cap``, refused unless they all fit under it.

        The condition uses the freed sum last read (:meth:`read`): read the counts first for a fresh one.
        """
        if cap is not None and labourer_id not in self.seen and not self.ctx.counters_missing:
            try:
                self.read([labourer_id])
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                self._missing()
        ex = Expressions()
        update = f"ADD {ex.name(COUNTER_ATTRIBUTE)} {ex.value(count)}"
        seen = self.seen.get(labourer_id)
        needed = max(self.shards_of(labourer_id), seen.used if seen else 0)
        if seen is not None and needed > seen.recorded:
            # A number set only grows: a cap that shrank still leaves the shards that closes wrote in the sum.
            update += f", {ex.name(SHARDS_ATTRIBUTE)} {ex.value({needed})}"
        entry: dict[str, Any] = {
            "TableName": self.ctx.leases_table,
            "Key": serialize_item(counter_key(labourer_id)),
            "UpdateExpression": update,
        }
        if cap is not None:
            freed = seen.freed if seen else 0
            counter = Attr(COUNTER_ATTRIBUTE)
            # Below the freed sum, the counts undercount (see read()): no claim until a read repairs them.
            fits = counter.gte(freed) & counter.lte(cap - count + freed)
            entry["ConditionExpression"] = ex.condition(counter.not_exists() | fits if freed == 0 else fits)
        return {"Update": {**entry, **ex.params()}}

    def free_item(self, labourer_id: str, task: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A transaction item freeing the slot of ``task``. Unconditional: the task's own condition makes it
        happen once. On the task's shard: ``job_shard`` for a job's task, else a hash of its id."""
        shards = self.shards_of(labourer_id)
        _ = self.ctx.field
        job_shard = (task or {}).get("job_shard")
        if isinstance(job_shard, int) and not isinstance(job_shard, bool) and job_shard >= 0:
            shard = job_shard % shards
        else:
            shard = zlib.crc32(str((task or {}).get(_("task_id"), "")).encode()) % shards
        ex = Expressions()
        return {
            "Update": {
                "TableName": self.ctx.leases_table,
                "Key": serialize_item(shard_key(labourer_id, shard)),
                "UpdateExpression": f"ADD {ex.name(FREED_ATTRIBUTE)} {ex.value(1)}",
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
            self._missing()
            transact_write(
                self.ctx.dynamodb, [i for i in items if not self._is_counter(i)], **self.ctx.retry_settings()
            )

    def _missing(self) -> None:
        logger.warning("No leases table: slots are not counted", extra={"table": self.ctx.leases_table})
        self.ctx.counters_missing = True

    def _is_counter(self, item: dict[str, Any]) -> bool:
        update = item.get("Update") or {}
        key = (update.get("Key") or {}).get("labourer_id", {}).get("S", "")
        return update.get("TableName") == self.ctx.leases_table and "#slots" in key

    def running(self, labourers: Iterable[Labourer | str]) -> dict[str, int]:
        """Tasks holding a slot per labourer id, from the counters read strongly consistent; 0 where none is kept."""
        return {labourer_id: max(0, count.running) for labourer_id, count in self.read(labourers).items()}

    def read(self, labourers: Iterable[Labourer | str]) -> dict[str, SlotCount]:
        """The counters of ``labourers``: one BatchGetItem for 100 keys (a labourer's ``#slots`` and shards).

        Counts below zero (tasks claimed before the counters existed, then closed: an upgrade) read as they
        are, and are repaired here: claims refuse such counts, so the cap never counts those closes as free
        slots, and a pass that reads the counters sets them right first.
        """
        ids = list(dict.fromkeys(lab if isinstance(lab, str) else lab.id for lab in labourers))
        # The first read of a labourer reads every shard (see the module's docstring); later ones its own count.
        wanted = {i: max(self.shards_of(i), self.seen[i].used) if i in self.seen else SHARDS_MAX for i in ids}
        counts = self._read(wanted)
        # A cap that was higher once left shards beyond this one's count: read those too (rare).
        more = {i: c.recorded for i, c in counts.items() if c.recorded > wanted[i]}
        if more:
            counts.update(self._read(more))
        for labourer_id, count in list(counts.items()):
            if count.running < 0:
                count = self._repair(labourer_id, count)
            before = self.seen.get(labourer_id)
            # What the first read found in use stays known to this process's later, narrower reads
            used = max(count.used, before.used if before else 0)
            counts[labourer_id] = self.seen[labourer_id] = replace(count, used=used)
        return counts

    def _read(self, wanted: Mapping[str, int]) -> dict[str, SlotCount]:
        keys = []
        for labourer_id, shards in wanted.items():
            keys.append(counter_key(labourer_id))
            keys.extend(shard_key(labourer_id, s) for s in range(shards))
        items = {
            item["labourer_id"]: item
            for item in batch_get(self.ctx.dynamodb, self.ctx.leases_table, keys, **self.ctx.retry_settings())
        }
        return {labourer_id: self._count(labourer_id, shards, items) for labourer_id, shards in wanted.items()}

    def _count(self, labourer_id: str, shards: int, items: Mapping[str, Mapping[str, Any]]) -> SlotCount:
        head = items.get(counter_key(labourer_id)["labourer_id"])
        freed = sum(
            int(items.get(shard_key(labourer_id, s)["labourer_id"], {}).get(FREED_ATTRIBUTE, 0)) for s in range(shards)
        )
        recorded = max((int(n) for n in (head or {}).get(SHARDS_ATTRIBUTE, ())), default=0)
        in_use = [s for s in range(shards) if items.get(shard_key(labourer_id, s)["labourer_id"])]
        return SlotCount(
            claimed=int((head or {}).get(COUNTER_ATTRIBUTE, 0)),
            freed=freed,
            shards=max(shards, recorded),
            exists=head is not None and COUNTER_ATTRIBUTE in head,
            recorded=recorded,
            used=max(in_use, default=-1) + 1 if shards == SHARDS_MAX else 0,
            in_use=tuple(in_use),
        )

    def _repair(self, labourer_id: str, count: SlotCount) -> SlotCount:
        """Set ``running`` to the freed sum, if a snapshot of the counters confirms a count below zero.

        A BatchGetItem is no snapshot: a claim and its close between the reads of two items would show a
        count below zero that isn't. TransactGetItems is one (100 items at most: 1 + ``SHARDS_MAX``).
        """
        # The shards that hold a count (one written since adds to the sum: the snapshot then reads below zero
        # again, and the next read repairs it once more): few, and within the 100 items of one TransactGetItems
        keys = [counter_key(labourer_id)] + [shard_key(labourer_id, s) for s in count.in_use]
        response = call_with_retries(
            lambda: self.ctx.dynamodb.transact_get_items(
                TransactItems=[{"Get": {"TableName": self.ctx.leases_table, "Key": serialize_item(k)}} for k in keys]
            ),
            **self.ctx.retry_settings(),
        )
        items = {}
        for entry in response.get("Responses", []):
            if entry.get("Item"):
                item = deserialize_item(entry["Item"])
                items[item["labourer_id"]] = item
        snapshot = self._count(labourer_id, count.shards, items)
        if snapshot.running >= 0:
            return snapshot
        ex = Expressions()
        unchanged = Attr(COUNTER_ATTRIBUTE).eq(snapshot.claimed)
        request = {
            "TableName": self.ctx.leases_table,
            "Key": serialize_item(counter_key(labourer_id)),
            "UpdateExpression": f"SET {ex.name(COUNTER_ATTRIBUTE)} = {ex.value(snapshot.freed)}",
            "ConditionExpression": ex.condition(unchanged if snapshot.exists else Attr(COUNTER_ATTRIBUTE).not_exists()),
        }
        request.update(ex.params())
        try:
            call_with_retries(lambda: self.ctx.dynamodb.update_item(**request), **self.ctx.retry_settings())
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return replace(snapshot, claimed=snapshot.freed)  # moved meanwhile: the next read looks again
        logger.warning(
            "Slot counter below zero set to 0",
            extra={"labourer_id": labourer_id, "counter": snapshot.running},
        )
        return replace(snapshot, claimed=snapshot.freed, exists=True)
