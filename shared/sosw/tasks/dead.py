"""Dead tasks: finding them, their pending notifications, and sending them back to work (redrive)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from sosw.dynamo import Expressions, error_code, query, serialize_item
from sosw.errors import InvalidInputError
from sosw.labourer import Labourer
from sosw.schema import TTL_ATTRIBUTE
from sosw.tasks.context import TaskContext
from sosw.tasks.model import ATTEMPT_FIELDS, NOTIFY_PENDING, REDRIVE_OFFSET, close_outcome
from sosw.tasks.moves import TaskMoves
from sosw.tasks.queue import TaskQueue

__all__ = ["DeadTasks"]

logger = Logger(child=True)


class DeadTasks:
    """Reads dead tasks, clears their pending notifications, and redrives them."""

    def __init__(self, ctx: TaskContext, queue: TaskQueue, moves: TaskMoves) -> None:
        self.ctx = ctx
        self.queue = queue
        self.moves = moves

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

        ``notification_pending=True``: only those whose dead-task notification was not yet published.
        """
        _ = self.ctx.field
        key = Key(_("labourer_id_task_status")).eq(f"{labourer.id}_0")
        if closed_after is not None and closed_before is not None:
            key = key & Key(_("closed_at")).between(closed_after, closed_before)
        elif closed_after is not None:
            key = key & Key(_("closed_at")).gte(closed_after)
        elif closed_before is not None:
            key = key & Key(_("closed_at")).lte(closed_before)
        filters = []
        if error_type:
            filters.append(Attr("last_error.type").eq(error_type))
        if notification_pending:
            filters.append(Attr(NOTIFY_PENDING).exists())
        condition = None
        for f in filters:
            condition = f if condition is None else condition & f
        tasks = query(
            self.ctx.dynamodb,
            table=self.ctx.closed_table,
            index=self.ctx.config["sosw_closed_tasks_labourer_status_index"],
            key_condition=key,
            ascending=False,
            filter_condition=condition,
        )
        result = []
        for task in tasks:
            result.append(task)
            if limit is not None and len(result) >= limit:
                break
        return result

    def mark_dead_task_notified(self, task_id: str) -> None:
        """The dead-task notification of this closed task was published (see :data:`NOTIFY_PENDING`)."""
        _ = self.ctx.field
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
        row = {k: v for k, v in task.items() if k not in dropped}
        # Attempt numbers keep growing (a late report of an old attempt can't pass for a new one); the
        # offset gives the task its max_attempts afresh.
        row[REDRIVE_OFFSET] = int(task.get(_("attempts"), 0))
        row[_("greenfield")] = self.queue.next_greenfields(labourer, 1)[0]
        source = Attr(_("task_id")).exists() & Attr(_("closed_at")).eq(task[_("closed_at")])
        moved = self.moves.move(
            task,
            source,
            self.ctx.closed_table,
            {_("task_id"): task[_("task_id")]},
            self.ctx.tasks_table,
            row,
            extra_items=self.ctx.close_items(task, close_outcome(task, completed=False), -1),  # no longer closed
        )
        if moved:
            logger.info("Task redriven", extra={"task_id": task[_("task_id")], "labourer_id": labourer.id})
        return moved
