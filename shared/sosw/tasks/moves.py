"""Moves between the tables: close (archive), wait for retry, queue again; and an operator's
cancel and prioritise of a queued task.

Each move is one transaction, a conditional delete and a conditional put, conditioned on the task being
exactly as read: a repeated, stale or concurrent move writes nothing and returns False.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Attr, ConditionBase
from botocore.exceptions import ClientError

from sosw.dynamo import Expressions, TransactionCancelled, error_code, serialize_item
from sosw.errors import InvalidInputError
from sosw.labourer import Labourer
from sosw.schema import TTL_ATTRIBUTE
from sosw.tasks import compat
from sosw.tasks.context import TaskContext
from sosw.tasks.model import ATTEMPT_FIELDS, CANCELLED_ERROR, NOTIFY_PENDING, close_outcome
from sosw.tasks.notices import DeadNotices
from sosw.tasks.queue import TaskQueue
from sosw.tasks.slots import SlotCounters, occupies_slot
from sosw.validation import check_delay, check_number, check_task_id

__all__ = ["TaskMoves"]

logger = Logger(child=True)


class TaskMoves:
    """Moves tasks between the open, retry and closed tables."""

    def __init__(self, ctx: TaskContext, queue: TaskQueue) -> None:
        self.ctx = ctx
        self.queue = queue
        self.slots = SlotCounters(ctx)
        self.notices = DeadNotices(ctx)

    def archive_task(self, task: dict[str, Any], completed: bool | None = None) -> bool:
        """Close the task: move it to the closed table, completed or dead, in one transaction.

        ``completed`` defaults to whether the task has ``completed_at``. Conditional on the task being
        exactly as read (same greenfield and attempt), so a repeated, stale or concurrent archive is a
        no-op: returns False and writes nothing.
        """
        _ = self.ctx.field
        self.ctx.require(task, "task_id", "labourer_id", "greenfield")
        if completed is None:
            completed = _("completed_at") in task
        if completed:
            self.ctx.require(task, "completed_at")
        now = self.ctx.now()
        closed = dict(task)
        closed[_("closed_at")] = now
        closed[_("labourer_id_task_status")] = f"{task[_('labourer_id')]}_{1 if completed else 0}"
        if self.ctx.config["closed_task_ttl_seconds"]:
            closed[TTL_ATTRIBUTE] = now + self.ctx.config["closed_task_ttl_seconds"]
        # Completed: the completion as read (a copy read before the completion would lose its result).
        state = Attr(_("completed_at"))
        source = self.ctx.version_condition(task) & (
            state.eq(task[_("completed_at")]) if completed else state.not_exists()
        )
        # A dead task whose notification is pending gets its marker in the same transaction (sosw.tasks.notices).
        marker = (
            []
            if completed or not closed.get(NOTIFY_PENDING)
            else [self.notices.put_item(task[_("labourer_id")], task[_("task_id")], now)]
        )
        moved = self.move(
            task,
            source,
            self.ctx.tasks_table,
            {_("task_id"): task[_("task_id")]},
            self.ctx.closed_table,
            closed,
            [*marker, *self.ctx.close_items(closed, close_outcome(closed, completed))],
            extra=self._free_slot(task),
        )
        if moved:
            self.ctx.stats["tasks_archived_completed" if completed else "tasks_archived_dead"] += 1
            logger.info(
                "Task closed",
                extra={"task_id": task[_("task_id")], "labourer_id": task[_("labourer_id")], "completed": completed},
            )
        return moved

    def move_task_to_retry_table(self, task: dict[str, Any], wanted_delay: int) -> bool:
        """Move the task to the retry table, to be queued again after ``wanted_delay`` seconds.

        One transaction, conditional on the task being exactly as read and not completed: a repeated or
        stale move writes nothing and returns False.
        """
        _ = self.ctx.field
        self.ctx.require(task, "task_id", "labourer_id", "greenfield")
        delay = check_delay(wanted_delay, "wanted_delay")
        row = dict(task)
        row[_("desired_launch_time")] = self.ctx.now() + delay
        source = self.ctx.version_condition(task) & Attr(_("completed_at")).not_exists()
        key = {_("task_id"): task[_("task_id")]}
        moved = self.move(
            task, source, self.ctx.tasks_table, key, self.ctx.retry_table, row, extra=self._free_slot(task)
        )
        if moved:
            self.ctx.stats["tasks_moved_to_retry"] += 1
            logger.info(
                "Task waits for retry",
                extra={"task_id": task[_("task_id")], "labourer_id": task[_("labourer_id")], "delay": delay},
            )
        return moved

    def retry_task(self, task: dict[str, Any], labourer_id: str, greenfield: int) -> bool:
        """Move the task from the retry table to the tasks table with ``greenfield`` (the head of the queue).

        Called by the Scavenger. One transaction, conditional on the retry row being as read: a repeated
        move writes nothing and returns False.
        """
        _ = self.ctx.field
        self.ctx.require(task, "task_id", "desired_launch_time")
        if task.get(_("labourer_id")) != labourer_id:
            raise InvalidInputError(
                _("labourer_id"), f"task {task.get(_('task_id'))!r} belongs to {task.get(_('labourer_id'))!r}"
            )
        greenfield = int(check_number(greenfield, _("greenfield")))
        self.queue.check_ceiling(greenfield)
        # sosw's report fields of the last attempt go too: they must not pass for the next attempt's
        row = {
            k: v for k, v in task.items() if k not in {_(f) for f in ATTEMPT_FIELDS} and not compat.is_report_field(k)
        }
        row[_("greenfield")] = greenfield
        source = Attr(_("task_id")).exists() & Attr(_("desired_launch_time")).eq(task[_("desired_launch_time")])
        key = {_("labourer_id"): labourer_id, _("task_id"): task[_("task_id")]}
        moved = self.move(task, source, self.ctx.retry_table, key, self.ctx.tasks_table, row)
        if moved:
            self.ctx.stats["tasks_retried"] += 1
            logger.info("Task queued again", extra={"task_id": task[_("task_id")], "labourer_id": labourer_id})
        return moved

    def retry_tasks(self, labourer: Labourer, tasks: list[dict[str, Any]]) -> int:
        """Queue tasks from the retry table at the head of the queue, in the given order; returns how many moved."""
        labourer = self.ctx.check_labourer(labourer)
        if not tasks:
            return 0
        oldest = self.queue.get_oldest_greenfield_for_labourer(labourer)
        # Spaced by the step like every queued task, so the queue's length can be read from its two ends.
        step = self.ctx.config["greenfield_task_step"]
        return sum(self.retry_task(task, labourer.id, oldest - step * (len(tasks) - i)) for i, task in enumerate(tasks))

    def move(
        self,
        task: Mapping[str, Any],
        source_condition: ConditionBase,
        source_table: str,
        source_key: Mapping[str, Any],
        target_table: str,
        target_item: Mapping[str, Any],
        extra_items: Sequence[Mapping[str, Any]] = (),
        *,
        extra: tuple[ConditionBase, list[dict[str, Any]]] | None = None,
    ) -> bool:
        """One transaction: delete the source if ``source_condition`` holds, put the target if absent, and
        ``extra_items`` (a notification's marker, what a close hook adds). ``extra``: a further condition on
        the source with its items (a slot freed only if the task still holds it). False, and nothing
        written, if a condition failed."""
        _ = self.ctx.field
        check_task_id(task.get(_("task_id")), _("task_id"))
        target_key = _("task_id")
        delete_ex, put_ex = Expressions(), Expressions()
        if extra is not None:
            source_condition = source_condition & extra[0]
        items = [
            {
                "Delete": {
                    "TableName": source_table,
                    "Key": serialize_item(source_key),
                    "ConditionExpression": delete_ex.condition(source_condition),
                    **delete_ex.params(),
                }
            },
            {
                "Put": {
                    "TableName": target_table,
                    "Item": serialize_item(target_item),
                    "ConditionExpression": put_ex.condition(Attr(target_key).not_exists()),
                    **put_ex.params(),
                }
            },
            *extra_items,
        ]
        items.extend(extra[1] if extra is not None else [])
        try:
            self.slots.transact(items)
        except TransactionCancelled:
            self.ctx.stats["moves_skipped"] += 1
            return False
        return True

    def _free_slot(self, task: Mapping[str, Any]) -> tuple[ConditionBase, list[dict[str, Any]]] | None:
        """A task that still holds its slot (expired, never reported) frees it in the move that takes it away;
        the move then also requires it still unreported, so a report and this move can't both free it."""
        if not occupies_slot(self.ctx, task):
            return None
        return self.ctx.open_condition(), [self.slots.free_item(task[self.ctx.field("labourer_id")], task)]

    def cancel_task(self, task_id: str, reason: str = "cancelled by an operator") -> bool:
        """Close a queued or waiting task with the error ``Cancelled``; False if it is neither any more."""
        status, task = self.queue.find_task(task_id)
        return self.cancel_found(status, task, reason)

    def cancel_found(self, status: str, task: Mapping[str, Any], reason: str) -> bool:
        """Cancel a task as read (``status`` as ``find_task`` says): one conditional transaction, like a close.

        A queued task (open, below the invoked range) or one waiting for retry is closed; anything else
        (running, reported, closed, unknown) is left alone: False.
        """
        _ = self.ctx.field
        error = {"type": CANCELLED_ERROR, "message": reason}
        if status == "open" and task.get(_("greenfield"), 0) < self.queue.ceiling():
            return self.archive_task({**task, "last_error": error}, completed=False)
        if status != "waiting":
            return False
        self.ctx.require(task, "task_id", "labourer_id", "desired_launch_time")
        now = self.ctx.now()
        closed = {k: v for k, v in task.items() if k != _("desired_launch_time")}
        closed.update({"last_error": error, _("closed_at"): now})
        closed[_("labourer_id_task_status")] = f"{task[_('labourer_id')]}_0"
        closed.setdefault(_("greenfield"), 0)
        if self.ctx.config["closed_task_ttl_seconds"]:
            closed[TTL_ATTRIBUTE] = now + self.ctx.config["closed_task_ttl_seconds"]
        source = Attr(_("task_id")).exists() & Attr(_("desired_launch_time")).eq(task[_("desired_launch_time")])
        key = {_("labourer_id"): task[_("labourer_id")], _("task_id"): task[_("task_id")]}
        moved = self.move(
            task,
            source,
            self.ctx.retry_table,
            key,
            self.ctx.closed_table,
            closed,
            extra_items=self.ctx.close_items(closed, "cancelled"),
        )
        if moved:
            self.ctx.stats["tasks_cancelled"] += 1
            logger.info("Waiting task cancelled", extra={"task_id": task[_("task_id")], "reason": reason})
        return moved

    def prioritise_task(self, task_id: str) -> bool:
        """Move a queued task to the head of its queue; False if it is not queued any more."""
        _ = self.ctx.field
        status, task = self.queue.find_task(task_id)
        if status != "open" or task.get(_("greenfield"), 0) >= self.queue.ceiling():
            return False
        labourer = self.ctx.get_labourer(task[_("labourer_id")])
        head = self.queue.get_oldest_greenfield_for_labourer(labourer) - self.ctx.config["greenfield_task_step"]
        ex = Expressions()
        try:
            self.ctx.dynamodb.update_item(
                TableName=self.ctx.tasks_table,
                Key=serialize_item({_("task_id"): task_id}),
                UpdateExpression=f"SET {ex.name(_('greenfield'))} = {ex.value(head)}",
                ConditionExpression=ex.condition(self.ctx.version_condition(task)),
                **ex.params(),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise
        return True
