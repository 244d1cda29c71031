"""Dead tasks: finding them, their pending notifications, and sending them back to work (redrive)."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from sosw.dynamo import BATCH_GET_SIZE, Expressions, batch_get, error_code, query, serialize_item
from sosw.errors import InvalidInputError
from sosw.labourer import Labourer
from sosw.schema import TTL_ATTRIBUTE
from sosw.tasks import compat
from sosw.tasks.context import TaskContext
from sosw.tasks.model import ATTEMPT_FIELDS, NOTIFY_PENDING, REDRIVE_OFFSET, close_outcome
from sosw.tasks.moves import TaskMoves
from sosw.tasks.notices import DeadNotices
from sosw.tasks.queue import TaskQueue

__all__ = ["DeadTasks"]

logger = Logger(child=True)


class DeadTasks:
    """Reads dead tasks, clears their pending notifications, and redrives them."""

    def __init__(self, ctx: TaskContext, queue: TaskQueue, moves: TaskMoves) -> None:
        self.ctx = ctx
        self.queue = queue
        self.moves = moves
        self.notices = DeadNotices(ctx)

    def get_dead_tasks(
        self,
        labourer: Labourer,
        *,
        error_type: str | None = None,
        closed_after: float | None = None,
        closed_before: float | None = None,
        limit: int | None = None,
        notification_pending: bool = False,
    ) -> list[dict[str, Any]]:
        """Dead tasks of a labourer, newest first, filtered by last error type and closing time.

        Works on sosw's closed-tasks index, which projects none of the fields asked for here: the index
        gives the keys, newest first, a page at a time, and the tasks are read whole from the table
        (BatchGetItem); the filters apply to those. ``notification_pending=True``: only those whose
        dead-task notification was not yet published, found from their markers (``sosw.tasks.notices``)
        without reading other dead tasks.
        """
        _ = self.ctx.field
        if limit is not None and limit < 1:
            return []
        if notification_pending:
            keys: Iterable[dict[str, Any]] = self._pending_keys(labourer, closed_after, closed_before)
        else:
            key = Key(_("labourer_id_task_status")).eq(f"{labourer.id}_0")
            if closed_after is not None and closed_before is not None:
                key = key & Key(_("closed_at")).between(closed_after, closed_before)
            elif closed_after is not None:
                key = key & Key(_("closed_at")).gte(closed_after)
            elif closed_before is not None:
                key = key & Key(_("closed_at")).lte(closed_before)
            page = BATCH_GET_SIZE if error_type or limit is None else min(limit, BATCH_GET_SIZE)
            keys = query(
                self.ctx.dynamodb,
                table=self.ctx.closed_table,
                index=self.ctx.config["sosw_closed_tasks_labourer_status_index"],
                key_condition=key,
                ascending=False,
                page_size=page,
            )
        result: list[dict[str, Any]] = []
        keys = iter(keys)
        while chunk := [k[_("task_id")] for k in islice(keys, BATCH_GET_SIZE)]:
            found = batch_get(
                self.ctx.dynamodb,
                self.ctx.closed_table,
                [{_("task_id"): task_id} for task_id in chunk],
                consistent=True,
                **self.ctx.retry_settings(),
            )
            by_id = {item[_("task_id")]: item for item in found}
            for task_id in chunk:
                task = by_id.get(task_id)
                if task is None or task.get(_("labourer_id_task_status")) != f"{labourer.id}_0":
                    continue  # redriven meanwhile
                if error_type and (task.get("last_error") or {}).get("type") != error_type:
                    continue
                result.append(task)
                if limit is not None and len(result) >= limit:
                    return result
        return result

    def _pending_keys(
        self, labourer: Labourer, closed_after: float | None, closed_before: float | None
    ) -> list[dict[str, Any]]:
        markers = [
            m
            for m in self.notices.pending(labourer.id)
            if (closed_after is None or m["closed_at"] >= closed_after)
            and (closed_before is None or m["closed_at"] <= closed_before)
        ]
        markers.sort(key=lambda m: m["closed_at"], reverse=True)
        return [{self.ctx.field("task_id"): m["task_id"]} for m in markers]

    def mark_dead_task_notified(self, task_id: str) -> None:
        """The dead-task notification of this closed task was published (see :data:`NOTIFY_PENDING`).

        The marker goes first: once published, a crash before the row's flag is cleared loses nothing.
        """
        _ = self.ctx.field
        self.notices.clear(task_id)
        ex = Expressions()
        try:
            self.ctx.dynamodb.update_item(
                TableName=self.ctx.closed_table,
                Key=serialize_item({_("task_id"): task_id}),
                UpdateExpression=f"REMOVE {ex.name(NOTIFY_PENDING)}",
                ConditionExpression=ex.condition(Attr(_("task_id")).exists()),
                **ex.params(),
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise

    def redrive_task(self, task: dict[str, Any]) -> bool:
        """Send a dead task back to the end of its queue, with max_attempts afresh, in one transaction."""
        _ = self.ctx.field
        labourer = self.ctx.get_labourer(task[_("labourer_id")])
        if task.get(_("labourer_id_task_status")) != f"{labourer.id}_0":
            raise InvalidInputError("task", f"task {task.get(_('task_id'))!r} is not dead")
        dropped = {
            _(f) for f in (*ATTEMPT_FIELDS, "closed_at", "labourer_id_task_status", "result", "stats", NOTIFY_PENDING)
        }
        dropped.add(TTL_ATTRIBUTE)
        row = {k: v for k, v in task.items() if k not in dropped and not compat.is_report_field(k)}
        # Attempt numbers keep growing (a late report of an old attempt can't pass for a new one); the
        # offset gives the task its max_attempts afresh.
        row[REDRIVE_OFFSET] = int(task.get(_("attempts"), 0))
        row[_("greenfield")] = self.queue.next_greenfields(labourer, 1)[0]
        source = Attr(_("task_id")).exists() & Attr(_("closed_at")).eq(task[_("closed_at")])
        # A redriven task is no longer dead: its pending notification (if any) goes with it.
        moved = self.moves.move(
            task,
            source,
            self.ctx.closed_table,
            {_("task_id"): task[_("task_id")]},
            self.ctx.tasks_table,
            row,
            [
                self.notices.delete_item(task[_("task_id")]),
                *self.ctx.close_items(task, close_outcome(task, completed=False), -1),  # no longer closed
            ],
        )
        if moved:
            logger.info("Task redriven", extra={"task_id": task[_("task_id")], "labourer_id": labourer.id})
        return moved
