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
        due = self.tm.get_tasks_to_retry_for_labourer(labourer)
        if due and self._time_left():
            counts["requeued"] += self.tm.retry_tasks(labourer, due)
        for task in self.tm.get_failed_tasks_for_labourer(labourer):
            if not self._time_left():
                return
            self._retry_or_close(labourer, task, task.get("last_error") or {}, counts)
        for task in self.tm.get_expired_tasks_for_labourer(labourer):
            if not self._time_left():
                return
            self._retry_or_close(labourer, task, EXPIRED, counts)
        for task in self.tm.get_completed_tasks_for_labourer(labourer):
            if not self._time_left():
                return
            counts["archived"] += self.tm.archive_task(task, completed=True)
        self._publish_pending(labourer, counts)

    def _retry_or_close(self, labourer: Labourer, task: dict[str, Any], error: dict[str, Any], counts: Counter) -> None:
        attempts = int(task.get("attempts", 0)) - int(task.get(REDRIVE_OFFSET, 0))
        error_type = str(error.get("type", ""))
        if attempts >= labourer.max_attempts or error_type in labourer.never_retry_errors:
            # The closed row keeps the last error (an expired task has none of its own), and a mark that its
            # notification is pending until it is published.
            closed = {**task, "last_error": error}
            if self.topic_arn:
                closed[NOTIFY_PENDING] = True
            if self.tm.archive_task(closed, completed=False):
                counts["dead"] += 1
                self._notify_dead(labourer, closed, counts)
            return
        if not labourer.has_attr("max_duration"):
            labourer.set_custom_attribute("max_duration", self.tm.ecology_client.get_labourer_max_duration(labourer))
        delay = retry_delay(labourer, attempts)
        counts["retried"] += self.tm.move_task_to_retry_table(task, delay)

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
