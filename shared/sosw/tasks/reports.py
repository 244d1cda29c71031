"""What workers report: the start guard, completion (with or without closing at once) and failure.

Every report is fenced by its attempt: written only while that attempt is current, invoked and
unreported, so a late, repeated or duplicate report writes nothing and its answer says why.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Attr

from sosw.dynamo import Expressions, TransactionCancelled, json_to_dynamo, serialize_item
from sosw.errors import InvalidInputError
from sosw.schema import TTL_ATTRIBUTE
from sosw.tasks import compat
from sosw.tasks.context import TaskContext
from sosw.tasks.model import WORKER_EVENT_FIELDS, ReportOutcome, ReportResult
from sosw.tasks.slots import SlotCounters
from sosw.validation import check_attempt, check_task_id, check_task_size

__all__ = ["TaskReports"]

logger = Logger(child=True)


class TaskReports:
    """Applies workers' reports to their tasks."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx
        self.slots = SlotCounters(ctx)

    def mark_task_completed(
        self,
        task_id: str,
        *,
        attempt: int | None = None,
        result: Any = None,
        stats: Any = None,
        labourer_id: str | None = None,
    ) -> ReportResult:
        """Record that the worker completed the task's current attempt.

        Written only if the task is open, invoked, not yet reported, and (when ``attempt`` is given) in
        that attempt; otherwise nothing is written and the result says why. ``attempt=None`` serves sosw
        workers, which don't know their attempt number; ``labourer_id`` (when the worker knows it) saves
        the read that finds whose slot the report frees.
        """
        extra = {}
        if result is not None:
            extra["result"] = result
        if stats is not None:
            extra["stats"] = stats
        return self._report(task_id, "completed_at", attempt, extra, labourer_id, compat.report_fields(result, stats))

    def complete_and_archive_task(
        self, task: Mapping[str, Any], *, attempt: int, result: Any = None, stats: Any = None
    ) -> ReportResult:
        """Completion that closes the task at once: one transaction instead of an update now and a move later.

        ``task`` is the worker's copy of its task (what it was invoked with: ``task_id``, ``labourer_id``,
        ``created_at``, ``greenfield``, ``attempts`` and ``payload``): the closed row is built from it, so
        no read is needed. Fenced like :meth:`mark_task_completed`: the task must be open, invoked,
        unreported and in this attempt, with this very greenfield; otherwise nothing is written.
        """
        _ = self.ctx.field
        self.ctx.require(task, "task_id", "labourer_id", "greenfield", "attempts")
        check_attempt(attempt)
        task_id = check_task_id(task[_("task_id")])
        labourer = self.ctx.get_labourer(task[_("labourer_id")])
        if task[_("attempts")] != attempt:
            raise InvalidInputError(_("attempts"), f"the task's attempts ({task[_('attempts')]}) is not {attempt}")
        extra = {k: v for k, v in (("result", result), ("stats", stats)) if v is not None}
        try:
            values = {_(k): json_to_dynamo(v) for k, v in extra.items()}
            values.update(compat.report_fields(result, stats))  # sosw's result_<key> and stat_<key>
            serialize_item(values)
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise InvalidInputError("result", f"result and stats must be JSON-serialisable: {exc!r}") from exc
        now = self.ctx.now()
        fields = (*WORKER_EVENT_FIELDS, "payload")
        closed = {_(k): task[_(k)] for k in fields if _(k) in task}
        closed.update(values)
        closed[_("completed_at")] = round(self.ctx.clock.now(), 3)
        closed[_("closed_at")] = now
        closed[_("labourer_id_task_status")] = f"{labourer.id}_1"
        if self.ctx.config["closed_task_ttl_seconds"]:
            closed[TTL_ATTRIBUTE] = now + self.ctx.config["closed_task_ttl_seconds"]
        check_task_size(
            closed, {**self.ctx.config, "task_item_headroom_bytes": 0}, "result", payload_field=_("payload")
        )
        source = (
            Attr(_("task_id")).exists()
            & Attr(_("labourer_id")).eq(labourer.id)
            & Attr(_("greenfield")).eq(task[_("greenfield")])
            & Attr(_("greenfield")).gte(now)
            & Attr(_("attempts")).eq(attempt)
            & self.ctx.open_condition()
        )
        for name in sorted(self.ctx.close_guard_fields):  # what the hooks read from the copy is the stored value
            source = source & (Attr(name).eq(task[name]) if name in task else Attr(name).not_exists())
        delete_ex, put_ex = Expressions(), Expressions()
        items = [
            {
                "Delete": {
                    "TableName": self.ctx.tasks_table,
                    "Key": serialize_item({_("task_id"): task_id}),
                    "ConditionExpression": delete_ex.condition(source),
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    **delete_ex.params(),
                }
            },
            {
                "Put": {
                    "TableName": self.ctx.closed_table,
                    "Item": serialize_item(closed),
                    "ConditionExpression": put_ex.condition(Attr(_("task_id")).not_exists()),
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    **put_ex.params(),
                }
            },
            *self.ctx.close_items(closed, "completed"),
        ]
        items.append(self.slots.free_item(labourer.id, task))
        try:
            self.slots.transact(items)
        except TransactionCancelled as cancelled:
            old = cancelled.reasons[0].get("Item") or {}
            was_closed = cancelled.reasons[1].get("Item") or {}
            if old and any(old.get(name) != task.get(name) for name in self.ctx.close_guard_fields):
                # A copy without what the stored task carries (a worker of an older release): report the
                # completion on the stored task instead, which the Scavenger then closes from its own row.
                return self.mark_task_completed(task_id, attempt=attempt, result=result, stats=stats)
            if not old and was_closed.get(_("attempts")) == attempt and _("completed_at") in was_closed:
                outcome, reason = ReportOutcome.DUPLICATE, "this attempt was already reported (completed and closed)"
            else:
                outcome, reason = self._why_refused(old, "completed_at", attempt, now)
            self.ctx.stats[f"reports_{outcome.value}"] += 1
            logger.info(
                "Report not written",
                extra={"task_id": task_id, "labourer_id": labourer.id, "outcome": outcome.value, "reason": reason},
            )
            return ReportResult(outcome, task_id, reason)
        self.ctx.stats["tasks_archived_completed"] += 1
        logger.info(
            "Task completed and closed", extra={"task_id": task_id, "labourer_id": labourer.id, "attempt": attempt}
        )
        return ReportResult(ReportOutcome.ACCEPTED, task_id, labourer_id=labourer.id)

    def mark_task_failed(
        self,
        task_id: str,
        *,
        attempt: int | None = None,
        error_type: str | None = None,
        error_message: str | None = None,
        result: Any = None,
        stats: Any = None,
        labourer_id: str | None = None,
    ) -> ReportResult:
        """Record that the current attempt failed, so the Scavenger retries it (or closes it) at once."""
        extra: dict[str, Any] = {"last_error": {"type": error_type or "Error", "message": error_message or ""}}
        if result is not None:
            extra["result"] = result
        if stats is not None:
            extra["stats"] = stats
        sosw_fields = compat.report_fields(result, stats)
        return self._report(task_id, "failed_at", attempt, extra, labourer_id, sosw_fields, count_failure=True)

    def mark_task_started(
        self, task_id: str, attempt: int, *, token: str | None = None, labourer_id: str | None = None
    ) -> ReportResult:
        """The duplicate-delivery guard: let exactly one delivery of an attempt run the work.

        Lambda's asynchronous invocation is at-least-once. A worker calls this (through the
        WorkerAssistant) before working: it is accepted once per attempt, only while that attempt is
        current and unreported; a second delivery gets ``duplicate``, an old attempt ``stale``.

        ``labourer_id`` also refuses a start later than the labourer's cooldown after the claim: run from
        then, the attempt could outlive its expiry and overlap its own retry. ``token`` (one per delivery)
        makes a botocore retry of this very call, after a lost response, an acceptance, not a duplicate.
        """
        _ = self.ctx.field
        check_task_id(task_id)
        check_attempt(attempt)
        now = self.ctx.now()
        ex = Expressions()
        started = Attr(_("started_attempt"))
        condition = (
            Attr(_("task_id")).exists()
            & Attr(_("greenfield")).gte(now)
            & self.ctx.open_condition()
            & Attr(_("attempts")).eq(attempt)
            & (started.not_exists() | started.ne(attempt))
        )
        latest_start = None
        if labourer_id is not None:
            labourer = self.ctx.get_labourer(labourer_id)
            # greenfield = claim time + delta; starting is safe until claim time + cooldown
            latest_start = now + self.ctx.config["greenfield_invocation_delta"] - int(labourer.cooldown)
            condition = condition & Attr(_("labourer_id")).eq(labourer.id) & Attr(_("greenfield")).gte(latest_start)
        update = (
            f"SET {ex.name(_('started_attempt'))} = {ex.value(attempt)}, "
            f"{ex.name(_('started_at'))} = {ex.value(round(self.ctx.clock.now(), 3))}, "
            f"{ex.name('started_token')} = {ex.value(token or uuid.uuid4().hex)}"
        )
        written, old = self.ctx.update_open_task(task_id, update, condition, ex, return_new=False)
        if not written:
            if token and old.get("started_token") == token and old.get(_("started_attempt")) == attempt:
                self.ctx.stats["starts_accepted"] += 1  # our own start, retried after a lost response
                return ReportResult(ReportOutcome.ACCEPTED, task_id)
            outcome, reason = self._why_refused(old, "started_attempt", attempt, now)
            if (
                outcome is ReportOutcome.STALE
                and latest_start is not None
                and old.get(_("attempts")) == attempt
                and now <= old.get(_("greenfield"), 0) < latest_start
            ):
                reason = "too late to start: run now, the attempt could outlive its expiry"
            self.ctx.stats[f"starts_{outcome.value}"] += 1
            return ReportResult(outcome, task_id, reason)
        self.ctx.stats["starts_accepted"] += 1
        return ReportResult(ReportOutcome.ACCEPTED, task_id)

    def _report(
        self,
        task_id: str,
        state_field: str,
        attempt: int | None,
        extra: dict[str, Any],
        labourer_id: str | None,
        sosw_fields: Mapping[str, Any] | None = None,
        *,
        count_failure: bool = False,
    ) -> ReportResult:
        """Mark the attempt reported and free its slot, in one transaction (nothing is written if refused).

        ``sosw_fields``: sosw's ``result_<key>`` / ``stat_<key>``, written beside ours; ``count_failure``:
        add one to sosw's ``failed_attempts``.
        """
        _ = self.ctx.field
        check_task_id(task_id)
        if attempt is not None:
            check_attempt(attempt)
        try:
            values = {_(k): json_to_dynamo(v) for k, v in extra.items()}
            values.update(sosw_fields or {})
            serialize_item(values)  # numbers DynamoDB can't store (too many digits) fail here, not later
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise InvalidInputError(
                "result", f"result and stats must be JSON-serialisable numbers and text: {exc!r}"
            ) from exc
        now = self.ctx.now()
        # sosw's copies of the result and stats take room in the item too
        size = sum(len(json.dumps(v, default=str)) for v in (*extra.values(), *(sosw_fields or {}).values()))
        headroom = self.ctx.config["task_item_headroom_bytes"]
        if size > headroom:
            raise InvalidInputError("result", f"result, stats and error take {size} bytes", limit=f"{headroom} bytes")
        if labourer_id is None:
            # sosw's workers name only the task: its labourer (whose slot the report frees) is read first.
            labourer_id = self.ctx.get_item(self.ctx.tasks_table, {_("task_id"): task_id}).get(_("labourer_id"))
            if labourer_id is None:
                return self._refused(task_id, {}, state_field, attempt, now)
        ex = Expressions()
        condition = (
            Attr(_("task_id")).exists()
            & Attr(_("labourer_id")).eq(labourer_id)
            & Attr(_("greenfield")).gte(now)
            & self.ctx.open_condition()
        )
        if attempt is not None:
            condition = condition & Attr(_("attempts")).eq(attempt)
        sets = [f"{ex.name(_(state_field))} = {ex.value(round(self.ctx.clock.now(), 3))}"]
        sets += [f"{ex.name(k)} = {ex.value(v)}" for k, v in values.items()]
        update = "SET " + ", ".join(sets)
        if count_failure:
            update += f" ADD {ex.name(compat.FAILED_ATTEMPTS)} {ex.value(1)}"
        item = {
            "Update": {
                "TableName": self.ctx.tasks_table,
                "Key": serialize_item({_("task_id"): task_id}),
                "UpdateExpression": update,
                "ConditionExpression": ex.condition(condition),
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                **ex.params(),
            }
        }
        try:
            self.slots.transact([item, self.slots.free_item(labourer_id, {_("task_id"): task_id})])
        except TransactionCancelled as cancelled:
            old = cancelled.reasons[0].get("Item") or {}
            if old and old.get(_("labourer_id")) != labourer_id:
                reason = f"the task belongs to {old.get(_('labourer_id'))!r}, not to {labourer_id!r}"
                return ReportResult(ReportOutcome.STALE, task_id, reason)
            return self._refused(task_id, old, state_field, attempt, now)
        self.ctx.stats[f"reports_{state_field}"] += 1
        logger.info(
            "Report written",
            extra={"task_id": task_id, "labourer_id": labourer_id, "state": state_field, "attempt": attempt},
        )
        return ReportResult(ReportOutcome.ACCEPTED, task_id, labourer_id=labourer_id)

    def _refused(
        self, task_id: str, old: Mapping[str, Any], state_field: str, attempt: int | None, now: int
    ) -> ReportResult:
        outcome, reason = self._why_refused(old, state_field, attempt, now)
        self.ctx.stats[f"reports_{outcome.value}"] += 1
        logger.info(
            "Report not written",
            extra={
                "task_id": task_id,
                "labourer_id": old.get(self.ctx.field("labourer_id")),
                "outcome": outcome.value,
                "reason": reason,
            },
        )
        return ReportResult(outcome, task_id, reason)

    def _why_refused(
        self, old: Mapping[str, Any], state_field: str, attempt: int | None, now: int
    ) -> tuple[ReportOutcome, str]:
        _ = self.ctx.field
        if not old:
            return ReportOutcome.STALE, "the task is not open (waiting for retry, closed, or unknown)"
        if attempt is not None and old.get(_("attempts")) != attempt:
            return ReportOutcome.STALE, f"attempt {attempt} is not current (current: {old.get(_('attempts'))})"
        if old.get(_("greenfield"), 0) < now:
            return ReportOutcome.STALE, "the task is queued, not invoked"
        if _(state_field) in old:
            return ReportOutcome.DUPLICATE, f"this attempt was already reported ({state_field})"
        return ReportOutcome.STALE, "this attempt was already reported otherwise"
