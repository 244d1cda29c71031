"""Claiming a task and invoking its worker: the only way a task leaves the queue to run.

The claim is a conditional update ("still queued"), so of two orchestrators racing for a task exactly
one invokes it. An Invoke that Lambda refused was not delivered: its claim is released, the attempt
not counted.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError, ConnectTimeoutError, EndpointConnectionError

from sosw.dynamo import Expressions, error_code, serialize_item
from sosw.errors import InvalidInputError, InvokeRejectedError, InvokeUncertainError, TaskAlreadyInvokedError
from sosw.labourer import Labourer
from sosw.tasks.context import TaskContext
from sosw.tasks.model import ATTEMPT_FIELDS, REPORT_FIELDS, WORKER_EVENT_FIELDS, InvokeResult
from sosw.tasks.queue import TaskQueue
from sosw.validation import check_task_id

__all__ = ["TaskClaims"]

logger = Logger(child=True)


class TaskClaims:
    """Claims queued tasks, invokes their workers, and releases claims whose Invoke was refused."""

    def __init__(self, ctx: TaskContext, queue: TaskQueue) -> None:
        self.ctx = ctx
        self.queue = queue

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
        self, labourer: Labourer, task: dict[str, Any], check_running: bool | None = True
    ) -> dict[str, Any]:
        """Claim the task: greenfield = now + ``greenfield_invocation_delta``, attempts + 1.

        By default the update is conditional on the task still being queued (greenfield below the
        start of this run), so two orchestrators racing for one task can't both invoke it: the loser
        gets :class:`TaskAlreadyInvokedError`, a ``RuntimeError``. ``check_running=False`` drops that
        condition (the task must still exist and belong to the labourer). Returns the task as stored.

        :raises RuntimeError:
        """
        labourer = self.ctx.check_labourer(labourer)
        task = self._check_task_for(labourer, task)
        _ = self.ctx.field
        start, _invoked, _expired = self.ctx.windows(labourer)
        ex = Expressions()
        condition = Attr(_("task_id")).exists() & Attr(_("labourer_id")).eq(labourer.id)
        if check_running:
            condition = condition & Attr(_("greenfield")).lt(start)
        cleared = ", ".join(ex.name(_(f)) for f in (*ATTEMPT_FIELDS, *REPORT_FIELDS))
        greenfield = self.ctx.now() + self.ctx.config["greenfield_invocation_delta"]
        # A token of this claim: if botocore retries the update after a lost response, the condition
        # fails on our own write, and the token tells it apart from another orchestrator's claim.
        token = uuid.uuid4().hex
        update = (
            f"SET {ex.name(_('greenfield'))} = {ex.value(greenfield)}, {ex.name('claim_token')} = {ex.value(token)} "
            f"ADD {ex.name(_('attempts'))} {ex.value(1)} REMOVE {cleared}"
        )
        log = {"task_id": task[_("task_id")], "labourer_id": labourer.id}
        written, claimed = self.ctx.update_open_task(task[_("task_id")], update, condition, ex)
        if not written:  # ``claimed`` is the task as it was
            if claimed and claimed.get(_("labourer_id")) != labourer.id:
                raise InvalidInputError(
                    _("labourer_id"),
                    f"task {task[_('task_id')]!r} belongs to {claimed.get(_('labourer_id'))!r}, not to {labourer.id!r}",
                )
            if claimed.get("claim_token") != token:
                raise TaskAlreadyInvokedError(task[_("task_id")])
            # else it is our own claim, retried by botocore after a lost response: it did succeed.
        logger.info("Task claimed", extra={**log, "attempt": claimed.get(_("attempts"))})
        return claimed

    def invoke_task(
        self, labourer: Labourer, task_id: str | None = None, task: dict[str, Any] | None = None
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
        if task_id is not None:
            task = self.queue.get_task_by_id(task_id)
            if not task:
                # Taken and already closed or moved by someone else: skipped, as the seed promises.
                self.ctx.stats["concurrent_task_invocations_skipped"] += 1
                logger.info("Task not open: skipped", extra={"task_id": task_id, "labourer_id": labourer.id})
                return InvokeResult.SKIPPED
        assert task is not None
        task = self._check_task_for(labourer, task)
        _ = self.ctx.field
        log = {"task_id": task[_("task_id")], "labourer_id": labourer.id}
        try:
            claimed = self.mark_task_invoked(labourer, task)
        except TaskAlreadyInvokedError:
            self.ctx.stats["concurrent_task_invocations_skipped"] += 1
            logger.info("Task already claimed: skipped", extra=log)
            return InvokeResult.SKIPPED
        log["attempt"] = claimed.get(_("attempts"))
        try:
            self.ctx.lambda_client.invoke(
                FunctionName=labourer.arn, InvocationType="Event", Payload=json.dumps(self.worker_event(claimed))
            )
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
            if 400 <= status < 500:
                released = self._release_claim(labourer, claimed)
                self.ctx.stats["invocations_rejected"] += 1
                logger.warning("Invoke refused", extra={**log, "error": error_code(exc), "released": released})
                raise InvokeRejectedError(
                    task[_("task_id")], f"Invoke refused ({error_code(exc)})", released=released
                ) from exc
            self.ctx.stats["invocations_uncertain"] += 1
            logger.error("Invoke failed: task stays invoked", extra={**log, "error": error_code(exc)})
            raise InvokeUncertainError(
                task[_("task_id")], f"Invoke failed ({error_code(exc)})", released=False
            ) from exc
        except (EndpointConnectionError, ConnectTimeoutError) as exc:
            # No connection was made, so nothing was delivered.
            released = self._release_claim(labourer, claimed)
            self.ctx.stats["invocations_rejected"] += 1
            logger.warning("Invoke could not connect", extra={**log, "released": released})
            raise InvokeRejectedError(
                task[_("task_id")], f"Invoke could not connect ({exc})", released=released
            ) from exc
        except Exception as exc:  # read timeout and the like: may have been delivered
            self.ctx.stats["invocations_uncertain"] += 1
            logger.error("Invoke outcome unknown: task stays invoked", extra=log)
            raise InvokeUncertainError(task[_("task_id")], f"Invoke outcome unknown ({exc})", released=False) from exc
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

    def _release_claim(self, labourer: Labourer, claimed: Mapping[str, Any]) -> bool:
        """Undo a claim whose Invoke was not delivered: back to the head of the queue, attempt not counted."""
        _ = self.ctx.field
        head = self.queue.get_oldest_greenfield_for_labourer(labourer) - self.ctx.config["greenfield_task_step"]
        ex = Expressions()
        condition = ex.condition(self.ctx.version_condition(claimed))
        update = f"SET {ex.name(_('greenfield'))} = {ex.value(head)} ADD {ex.name(_('attempts'))} {ex.value(-1)}"
        try:
            self.ctx.dynamodb.update_item(
                TableName=self.ctx.tasks_table,
                Key=serialize_item({_("task_id"): claimed[_("task_id")]}),
                UpdateExpression=update,
                ConditionExpression=condition,
                **ex.params(),
            )
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False  # someone moved it meanwhile: leave it to them
            raise
        logger.info("Claim released", extra={"task_id": claimed[_("task_id")], "labourer_id": labourer.id})
        return True
