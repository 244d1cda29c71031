"""Claiming a task and invoking its worker: the only way a task leaves the queue to run.

The claim is a conditional update ("still queued"), so of two orchestrators racing for a task exactly
one invokes it. An Invoke that Lambda refused was not delivered: its claim is released, the attempt
not counted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Attr, ConditionBase
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError

from sosw.dynamo import Expressions, TransactionCancelled, error_code, serialize_item
from sosw.errors import (
    InvalidInputError,
    InvokeRejectedError,
    InvokeUncertainError,
    NoFreeSlotError,
    TaskAlreadyInvokedError,
)
from sosw.labourer import Labourer
from sosw.tasks.context import TaskContext
from sosw.tasks.model import ATTEMPT_FIELDS, REPORT_FIELDS, WORKER_EVENT_FIELDS, InvokeResult
from sosw.tasks.queue import TaskQueue
from sosw.tasks.slots import SlotCounters, occupies_slot
from sosw.validation import check_task_id

__all__ = ["TaskClaims"]

logger = Logger(child=True)

# One transaction holds 100 items: 99 claims and the slot counter's update.
_CLAIMS_PER_TRANSACTION = 99


class TaskClaims:
    """Claims queued tasks, invokes their workers, and releases claims whose Invoke was refused."""

    def __init__(self, ctx: TaskContext, queue: TaskQueue) -> None:
        self.ctx = ctx
        self.queue = queue
        self.slots = SlotCounters(ctx)

    def _check_task_for(self, labourer: Labourer, task: Any) -> dict[str, Any]:
        _ = self.ctx.field
        if not isinstance(task, dict):
            raise InvalidInputError("task", f"expected a task dict, got {type(task).__name__}")
        check_task_id(task.get(_("task_id")), _("task_id"))
        if task.get(_("labourer_id")) != labourer.id:
            raise InvalidInputError(
                _("labourer_id"),
                f"task {task.get(_('task_id'))!r} belongs to {task.get(_('labourer_id'))!r}, not to {labourer.id!r}",
            )
        return task

    def mark_task_invoked(
        self, labourer: Labourer, task: dict[str, Any], check_running: bool | None = True, *, cap: int | None = None
    ) -> dict[str, Any]:
        """Claim the task: greenfield = now + ``greenfield_invocation_delta``, attempts + 1, one slot taken.

        By default the claim is conditional on the task still being queued (greenfield below the start
        of this run) and unchanged since it was read, so two orchestrators racing for one task can't both
        invoke it: the loser gets :class:`TaskAlreadyInvokedError`, a ``RuntimeError``.
        ``check_running=False`` drops the "queued" condition (the task must still exist and belong to the
        labourer). With ``cap``, the labourer's slot counter must be below it (:class:`NoFreeSlotError`).
        Returns the task as stored.

        :raises RuntimeError:
        """
        labourer = self.ctx.check_labourer(labourer)
        task = self._check_task_for(labourer, task)
        _ = self.ctx.field
        start, _invoked, _expired = self.ctx.windows(labourer)
        if not check_running:
            # Whatever state the copy shows, the claim applies to the task as stored now: read it.
            stored = self.queue.get_task_by_id(task[_("task_id")])
            if not stored:
                raise TaskAlreadyInvokedError(task[_("task_id")])
            task = self._check_task_for(labourer, stored)
        # A task that already holds a slot (re-claimed while running, check_running=False) keeps it.
        occupying = not check_running and occupies_slot(self.ctx, task)
        still = self.ctx.open_condition() & Attr(_("greenfield")).gte(self.ctx.now()) if occupying else None
        item, claimed = self._claim_item(labourer, task, start, check_running=bool(check_running), extra=still)
        for fresh in (False, True):
            items = [item] if occupying else [item, self.slots.take_item(labourer.id, cap)]
            try:
                self.slots.transact(items)
                break
            except TransactionCancelled as cancelled:
                if cancelled.reasons[0].get("Code") == "ConditionalCheckFailed":
                    self._refused(labourer, task, cancelled)
                if fresh or cap is None:
                    raise NoFreeSlotError(task[_("task_id")], labourer.id, cap) from None
                # The counter refused on a freed sum read earlier: once more on the counts as they are now.
                self.slots.read([labourer.id])
        logger.info("Task claimed", extra={"task_id": task[_("task_id")], "labourer_id": labourer.id})
        return claimed

    def _refused(self, labourer: Labourer, task: Mapping[str, Any], cancelled: TransactionCancelled) -> None:
        """The claim's own condition failed: raise why."""
        _ = self.ctx.field
        old = cancelled.reasons[0].get("Item") or {}
        if old and old.get(_("labourer_id")) != labourer.id:
            raise InvalidInputError(
                _("labourer_id"),
                f"task {task[_('task_id')]!r} belongs to {old.get(_('labourer_id'))!r}, not to {labourer.id!r}",
            ) from None
        raise TaskAlreadyInvokedError(task[_("task_id")]) from None

    def claim_tasks(self, labourer: Labourer, tasks: list[dict[str, Any]], cap: int) -> list[dict[str, Any]]:
        """Claim queued tasks together: one transaction per 99 tasks, taking their slots at once.

        The Orchestrator's way: one request for a whole refill instead of one per task, and its own
        claims never contend for the slot counter. Tasks taken meanwhile by someone else are left out;
        when the counter has less room than asked, as many as fit are claimed. Returns those claimed.
        """
        labourer = self.ctx.check_labourer(labourer)
        start, _invoked, _expired = self.ctx.windows(labourer)
        claimed: list[dict[str, Any]] = []
        for first in range(0, len(tasks), _CLAIMS_PER_TRANSACTION):
            pending = [
                self._claim_item(labourer, self._check_task_for(labourer, task), start, check_running=True)
                for task in tasks[first : first + _CLAIMS_PER_TRANSACTION]
            ]
            while pending:
                take = self.slots.take_item(labourer.id, cap, count=len(pending))
                try:
                    self.slots.transact([p[0] for p in pending] + [take])
                    claimed.extend(p[1] for p in pending)
                    break
                except TransactionCancelled as cancelled:
                    reasons = cancelled.reasons[: len(pending)]
                    lost = {i for i, r in enumerate(reasons) if r.get("Code") == "ConditionalCheckFailed"}
                    if lost:
                        self.ctx.stats["concurrent_task_invocations_skipped"] += len(lost)
                        pending = [p for i, p in enumerate(pending) if i not in lost]
                        continue
                    room = cap - self.slots.running([labourer.id])[labourer.id]
                    if room <= 0:
                        return claimed
                    pending = pending[: min(room, len(pending) - 1)]
        logger.info("Tasks claimed", extra={"labourer_id": labourer.id, "count": len(claimed)})
        return claimed

    def _claim_item(
        self,
        labourer: Labourer,
        task: dict[str, Any],
        start: int,
        *,
        check_running: bool,
        extra: ConditionBase | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The claim's update of one task, and the task as it will be stored once it is written.

        Conditional on the task being as read (same greenfield and attempt): the stored task is then the
        read copy with the claim applied, so no read is needed after the write.
        """
        _ = self.ctx.field
        ex = Expressions()
        condition = self.ctx.version_condition(task) & Attr(_("labourer_id")).eq(labourer.id)
        if check_running:
            condition = condition & Attr(_("greenfield")).lt(start)
        if extra is not None:
            condition = condition & extra
        cleared = [_(f) for f in (*ATTEMPT_FIELDS, *REPORT_FIELDS)] + ["claim_token"]
        greenfield = self.ctx.now() + self.ctx.config["greenfield_invocation_delta"]
        attempts = int(task.get(_("attempts"), 0)) + 1
        update = (
            f"SET {ex.name(_('greenfield'))} = {ex.value(greenfield)} "
            f"ADD {ex.name(_('attempts'))} {ex.value(1)} REMOVE {', '.join(ex.name(f) for f in cleared)}"
        )
        item = {
            "Update": {
                "TableName": self.ctx.tasks_table,
                "Key": serialize_item({_("task_id"): task[_("task_id")]}),
                "UpdateExpression": update,
                "ConditionExpression": ex.condition(condition),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                **ex.params(),
            }
        }
        claimed = {k: v for k, v in task.items() if k not in cleared}
        claimed[_("greenfield")] = greenfield
        claimed[_("attempts")] = attempts
        return item, claimed

    def invoke_task(
        self,
        labourer: Labourer,
        task_id: str | None = None,
        task: dict[str, Any] | None = None,
        *,
        cap: int | None = None,
    ) -> InvokeResult:
        """Claim the task and invoke the worker Lambda asynchronously with it.

        Give either ``task_id`` (the task is read from the table first: safer from "task injection") or
        ``task``. In both cases the worker receives the task as stored, never a caller's copy. A task
        that is already claimed is skipped with no exception, so concurrent orchestrators don't duplicate
        invocations.

        If Lambda refuses the Invoke (4xx: throttled, not found, ...) nothing was delivered: the claim is
        released (the task goes back to the head of the queue, the attempt is not counted) and
        :class:`InvokeRejectedError` is raised. After a timeout or a 5xx the Invoke may have been
        delivered: the task stays invoked (the expiry path handles it) and :class:`InvokeUncertainError`
        is raised. botocore never retries the Invoke on its own.
        """
        labourer = self.ctx.check_labourer(labourer)
        if (task_id is None) == (task is None):
            raise InvalidInputError("task_id", "give exactly one of task_id or task")
        if task is not None:
            task_id = self._check_task_for(labourer, task)[self.ctx.field("task_id")]
        # The worker gets the task as stored, never a caller's copy: read it (strongly consistent) first.
        assert task_id is not None
        stored = self.queue.get_task_by_id(task_id)
        log = {"task_id": task_id, "labourer_id": labourer.id}
        if not stored:
            # Taken and already closed or moved by someone else: skipped, as the seed promises.
            self.ctx.stats["concurrent_task_invocations_skipped"] += 1
            logger.info("Task not open: skipped", extra=log)
            return InvokeResult.SKIPPED
        try:
            claimed = self.mark_task_invoked(labourer, stored, cap=cap)
        except TaskAlreadyInvokedError:
            self.ctx.stats["concurrent_task_invocations_skipped"] += 1
            logger.info("Task already claimed: skipped", extra=log)
            return InvokeResult.SKIPPED
        except NoFreeSlotError:
            self.ctx.stats["invocations_without_slot"] += 1
            logger.info("No free slot: skipped", extra=log)
            return InvokeResult.NO_SLOT
        return self.invoke_claimed(labourer, claimed)

    def invoke_claimed(self, labourer: Labourer, claimed: dict[str, Any]) -> InvokeResult:
        """Invoke the worker with a task this process claimed; release the claim if Lambda refused it."""
        _ = self.ctx.field
        task_id = claimed[_("task_id")]
        log = {"task_id": task_id, "labourer_id": labourer.id, "attempt": claimed.get(_("attempts"))}
        try:
            self.ctx.lambda_client.invoke(
                FunctionName=labourer.arn, InvocationType="Event", Payload=json.dumps(self.worker_event(claimed))
            )
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
            if 400 <= status < 500:
                released = self.release_claim(labourer, claimed)
                self.ctx.stats["invocations_rejected"] += 1
                logger.warning("Invoke refused", extra={**log, "error": error_code(exc), "released": released})
                raise InvokeRejectedError(task_id, f"Invoke refused ({error_code(exc)})", released=released) from exc
            self.ctx.stats["invocations_uncertain"] += 1
            logger.error("Invoke failed: task stays invoked", extra={**log, "error": error_code(exc)})
            raise InvokeUncertainError(task_id, f"Invoke failed ({error_code(exc)})", released=False) from exc
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            # No connection was made, so nothing was delivered.
            released = self.release_claim(labourer, claimed)
            self.ctx.stats["invocations_rejected"] += 1
            logger.warning("Invoke could not connect", extra={**log, "released": released})
            raise InvokeRejectedError(task_id, f"Invoke could not connect ({exc})", released=released) from exc
        except Exception as exc:  # read timeout and the like: may have been delivered
            self.ctx.stats["invocations_uncertain"] += 1
            logger.error("Invoke outcome unknown: task stays invoked", extra=log)
            raise InvokeUncertainError(task_id, f"Invoke outcome unknown ({exc})", released=False) from exc
        self.ctx.stats[f"invoked_tasks_for_labourer_{labourer.id}"] += 1
        logger.info("Task invoked", extra=log)
        return InvokeResult.INVOKED

    def worker_event(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """The event a worker receives: its payload merged with the task's own fields (task_id, attempts, ...)."""
        _ = self.ctx.field
        try:
            payload = json.loads(task.get(_("payload")) or "{}")
        except (TypeError, ValueError):
            payload = {"payload": task.get(_("payload"))}
        if not isinstance(payload, dict):
            payload = {"payload": payload}
        fields = {key: task[_(key)] for key in WORKER_EVENT_FIELDS if _(key) in task}
        return {**payload, **fields}

    def release_claim(self, labourer: Labourer, claimed: Mapping[str, Any]) -> bool:
        """Undo a claim whose Invoke was not delivered: back to the head of the queue, attempt not counted,
        slot freed, in one transaction."""
        _ = self.ctx.field
        head = self.queue.get_oldest_greenfield_for_labourer(labourer) - self.ctx.config["greenfield_task_step"]
        ex = Expressions()
        update = f"SET {ex.name(_('greenfield'))} = {ex.value(head)} ADD {ex.name(_('attempts'))} {ex.value(-1)}"
        item = {
            "Update": {
                "TableName": self.ctx.tasks_table,
                "Key": serialize_item({_("task_id"): claimed[_("task_id")]}),
                "UpdateExpression": update,
                "ConditionExpression": ex.condition(self.ctx.version_condition(claimed) & self.ctx.open_condition()),
                **ex.params(),
            }
        }
        try:
            self.slots.transact([item, self.slots.free_item(labourer.id, claimed)])
        except TransactionCancelled:
            return False  # someone moved or reported it meanwhile: leave it to them
        logger.info("Claim released", extra={"task_id": claimed[_("task_id")], "labourer_id": labourer.id})
        return True
