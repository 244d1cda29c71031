"""The Scavenger: closes what is done and brings back what must run again.

Per labourer: archive completed tasks; for failed (reported) and expired (silent) tasks, either move
them to the retry table with the labourer's retry delay, or close them as dead (at ``max_attempts``,
or at once for ``never_retry_errors``) and publish a notification; queue again the tasks whose delay
has passed, at the head of the queue. Every move is a conditional transaction, so two scavengers
running at once (or a repeated run after a crash) can't move a task twice.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from sosw.labourer import Labourer
from sosw.managers.task import TaskManager
from sosw.metrics import put_labourer_metrics
from sosw.processors import SoswProcessor
from sosw.retry import retry_delay
from sosw.tasks.model import NOTIFY_PENDING, REDRIVE_OFFSET

logger = Logger(child=True)

EXPIRED = {"type": "Expired", "message": "no report within duration + cooldown"}


@dataclass
class ScavengerReport:
    labourers: dict[str, Counter[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def total(self, key: str) -> int:
        return sum(c[key] for c in self.labourers.values())

    def to_dispatch(self) -> list[str]:
        """Labourers with tasks put back in the queue, or waiting for a retry: dispatch has work coming."""
        return [lab for lab, c in self.labourers.items() if c["requeued"] or c["retried"]]


class Scavenger(SoswProcessor):
    """One scheduled run: ``Scavenger(task_manager, sns_client=..., topic_arn=...).run()``.

    Or sosw's way (``sosw.processors``): ``Scavenger(custom_config)``, then ``scavenger(event)``; the topic is
    ``custom_config["sns_config"]["recipient"]`` (sosw's SnsManager setting) or ``SOSW_DEAD_LETTER_TOPIC_ARN``.
    """

    def __init__(
        self,
        task_manager: TaskManager | Mapping[str, Any] | None = None,
        *,
        sns_client: Any = None,
        topic_arn: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.tm = self._task_manager_of(task_manager, kwargs)
        if topic_arn is None and not isinstance(task_manager, TaskManager):
            recipient = (self.config.get("sns_config") or {}).get("recipient")
            topic_arn = recipient or os.environ.get("SOSW_DEAD_LETTER_TOPIC_ARN")
        self.topic_arn = topic_arn
        self._sns = sns_client
        self._remaining: Callable[[], float] | None = None
        self._counts: Counter[str] = Counter()

    @property
    def sns_client(self) -> Any:
        if self._sns is None:
            import boto3

            self._sns = boto3.client("sns")
        return self._sns

    @sns_client.setter
    def sns_client(self, client: Any) -> None:
        self._sns = client

    def run(
        self, remaining_seconds: Callable[[], float] | None = None, *, labourer_ids: Iterable[str] | None = None
    ) -> ScavengerReport:
        """Scavenge every labourer (``labourer_ids``: only those) once; stop moving tasks ``safety_seconds``
        before ``remaining_seconds`` ends."""
        report = ScavengerReport()
        self._remaining = remaining_seconds
        wanted = None if labourer_ids is None else set(labourer_ids)
        for labourer in self.tm.open_run_window():
            if wanted is not None and labourer.id not in wanted:
                continue
            counts = report.labourers.setdefault(labourer.id, Counter())
            try:
                self._scavenge(labourer, counts)
            except Exception as exc:  # one labourer's failure must not stop the others
                report.errors[labourer.id] = f"{type(exc).__name__}: {exc}"
                logger.exception("Scavenging a labourer failed", extra={"labourer_id": labourer.id})
            put_labourer_metrics(labourer.id, {k: counts[k] for k in ("archived", "retried", "dead", "requeued")})
        logger.info("Scavenger run done", extra={"counts": {k: dict(v) for k, v in report.labourers.items()}})
        return report

    def _time_left(self) -> bool:
        safety = float(self.tm.config.get("scavenger_safety_seconds", 5))
        return self._remaining is None or self._remaining() > safety

    def _scavenge(self, labourer: Labourer, counts: Counter[str]) -> None:
        # Due retries and failures first: they hold up work; archiving completed tasks can wait a run.
        self._counts = counts
        if self._time_left():
            self.retry_tasks(labourer)
        for task in self.tm.get_failed_tasks_for_labourer(labourer):
            if not self._time_left():
                return
            self.process_expired_task(labourer, task)
        if not self.handle_expired_tasks(labourer):
            return
        if self.archive_tasks(labourer):
            self._publish_pending(labourer, counts)

    # sosw's steps and hooks, by sosw's names: a subclass that replaces one changes what the run does.

    def retry_tasks(self, labourer: Labourer) -> int:
        """Queue the labourer's due retries (and delayed tasks) at the head of its queue; returns how many."""
        due = self.tm.get_tasks_to_retry_for_labourer(labourer)
        if not due:
            return 0
        moved = self.tm.retry_tasks(labourer, due)
        self._counts["requeued"] += moved
        return moved

    def handle_expired_tasks(self, labourer: Labourer) -> bool:
        """Retry or close each task that ran out of time without a report; False if the run's time ran out."""
        for task in self.tm.get_expired_tasks_for_labourer(labourer):
            if not self._time_left():
                return False
            self.process_expired_task(labourer, task)
        return True

    def process_expired_task(self, labourer: Labourer, task: dict[str, Any]) -> None:
        """A task whose attempt failed (reported) or expired (silent): to the retry table if
        :meth:`should_retry_task`, else closed as dead with a notification."""
        if self.should_retry_task(labourer, task):
            self.move_task_to_retry_table(task, labourer)
        else:
            self._close_dead(labourer, task)

    def should_retry_task(self, labourer: Labourer, task: dict[str, Any]) -> bool:
        """Attempts left (``max_attempts``, a redrive's attempts not counted) and an error worth retrying
        (not in the labourer's ``never_retry_errors``)."""
        attempts = int(task.get(self.get_db_field_name("attempts"), 0)) - int(task.get(REDRIVE_OFFSET, 0))
        error_type = str(self._error_of(task).get("type", ""))
        return attempts < labourer.max_attempts and error_type not in labourer.never_retry_errors

    def calculate_delay_for_task_retry(self, labourer: Labourer, task: dict[str, Any]) -> int:
        """Seconds the task waits before its next attempt: the labourer's ``retry_policy`` (sosw's ``linear``:
        its max duration times the attempts made)."""
        if not labourer.has_attr("max_duration"):
            labourer.set_custom_attribute("max_duration", self.tm.ecology_client.get_max_labourer_duration(labourer))
        attempts = int(task.get(self.get_db_field_name("attempts"), 0)) - int(task.get(REDRIVE_OFFSET, 0))
        return retry_delay(labourer, attempts)

    def move_task_to_retry_table(self, task: dict[str, Any], labourer: Labourer) -> bool:
        """To the retry table with :meth:`calculate_delay_for_task_retry`'s delay; False if it moved meanwhile."""
        moved = self.tm.move_task_to_retry_table(task, self.calculate_delay_for_task_retry(labourer, task))
        self._counts["retried"] += moved
        return moved

    def archive_tasks(self, labourer: Labourer) -> bool:
        """Close the tasks completed since the last run; False if the run's time ran out."""
        for task in self.tm.get_completed_tasks_for_labourer(labourer):
            if not self._time_left():
                return False
            self._counts["archived"] += self.tm.archive_task(task, completed=True)
        return True

    def _error_of(self, task: dict[str, Any]) -> dict[str, Any]:
        # A reported failure carries its error; a silent attempt expired.
        if task.get(self.get_db_field_name("failed_at")) is not None:
            return task.get("last_error") or {}
        return EXPIRED

    def _close_dead(self, labourer: Labourer, task: dict[str, Any]) -> None:
        # The closed row keeps the last error (an expired task has none of its own), and a mark that its
        # notification is pending until it is published.
        closed = {**task, "last_error": self._error_of(task)}
        if self.topic_arn:
            closed[NOTIFY_PENDING] = True
        if self.tm.archive_task(closed, completed=False):
            self._counts["dead"] += 1
            self._notify_dead(labourer, closed, self._counts)

    def _notify_dead(self, labourer: Labourer, task: dict[str, Any], counts: Counter[str]) -> None:
        message = {
            "task_id": task["task_id"],
            "labourer_id": labourer.id,
            "attempts": int(task.get("attempts", 0)),
            "last_error": task.get("last_error") or {},
        }
        logger.warning("Task closed as dead", extra=message)
        if not self.topic_arn:
            return
        try:
            self.sns_client.publish(
                TopicArn=self.topic_arn,
                Subject=f"sosw: task dead ({labourer.id})"[:100],
                Message=json.dumps(message, default=str),
                MessageAttributes={"labourer_id": {"DataType": "String", "StringValue": labourer.id}},
            )
        except Exception:  # left pending: published again on the next run
            logger.exception("Publishing a dead-task notification failed", extra={"task_id": task["task_id"]})
            return
        self.tm.mark_dead_task_notified(task["task_id"])
        counts["notified"] += 1

    def _publish_pending(self, labourer: Labourer, counts: Counter[str]) -> None:
        """Notifications left pending by a crash or an SNS error (found from their markers: no dead task is read
        to find them, so this costs the same however many have piled up)."""
        if not self.topic_arn:
            return
        for task in self.tm.get_dead_tasks(labourer, notification_pending=True, limit=25):
            if not self._time_left():
                return
            # The index may lag: publish only if the row itself (read consistently) is still pending.
            current = self.tm.get_closed_task_by_id(task["task_id"])
            if current.get(NOTIFY_PENDING):
                self._notify_dead(labourer, current, counts)
