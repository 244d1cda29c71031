"""sosw's ``sosw.scheduler``: ``Scheduler(custom_config)``, then ``scheduler(event)``, as sosw users' Lambdas build it.

sosw's Scheduler chunks a job into task payloads through a queue file in S3, handed on to sibling
invocations while time runs out. Here the job is this package's (``sosw.jobs``: the same chunking, streamed,
resumable from the job's cursor), made by the ``JobScheduler`` (``sosw.job_scheduler``) that the stack's
Scheduler function runs; this class gives it sosw's processor face. sosw's S3 queue-file steps have no
counterpart (``docs/sosw-differences.md``).
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from typing import Any

from sosw import app
from sosw.job_scheduler import JobScheduler
from sosw.jobs.job_event import extract_job, iter_dates, period_dates
from sosw.managers.task import TaskManager
from sosw.processors import SoswProcessor

__all__ = ["Scheduler"]


class Scheduler(SoswProcessor):
    """``Scheduler(custom_config)`` (the TaskManager config under ``task_config``), then ``scheduler(event)``.

    The event is sosw's job event (the job, or ``{"job": ...}``). Calling it creates the job's tasks, or as many
    as the Lambda's time allows (the stack's Scheduler function goes on from the job's cursor); returns None,
    as sosw's does (``last_report`` holds the answer).
    """

    def __init__(
        self, task_manager: TaskManager | Mapping[str, Any] | None = None, *, s3_client: Any = None, **kwargs: Any
    ) -> None:
        if not isinstance(task_manager, TaskManager):
            # sosw's Scheduler reads its job schema from its own config (top level); the TaskManager here takes it
            # in its config.
            raw = dict(kwargs.pop("custom_config", None) or task_manager or {})
            schema = {k: raw[k] for k in ("job_schema", "job_schema_variants") if raw.get(k)}
            raw["task_config"] = {**(raw.get("task_config") or {}), **schema}
            task_manager, kwargs["custom_config"] = None, raw
        self.tm = self._task_manager_of(task_manager, kwargs)
        self._s3 = s3_client

    @property
    def s3_client(self) -> Any:
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3

    @s3_client.setter
    def s3_client(self, client: Any) -> None:
        self._s3 = client

    def extract_job_from_payload(self, event: Mapping[str, Any] | str) -> dict[str, Any]:
        """The job of sosw's event (``{"job": ...}`` or the job itself, maybe as JSON text), with its
        ``lambda_name`` trimmed to the function name, as sosw's."""
        job, labourer_id = extract_job(event)
        return {**job, "lambda_name": labourer_id}

    # sosw's date helpers: the days a job's ``period`` word stands for, as ``YYYY-MM-DD``, oldest first.

    def _dates(self, pattern: str) -> list[str]:
        return list(iter_dates(*period_dates(pattern, datetime.date.today())))

    def today(self, pattern: str = "today") -> list[str]:
        return self._dates(pattern)

    def yesterday(self, pattern: str = "yesterday") -> list[str]:
        return self._dates(pattern)

    def last_week(self, pattern: str = "last_week") -> list[str]:
        return self._dates(pattern)

    def last_x_days(self, pattern: str) -> list[str]:
        """``last_3_days``: the 3 days before today."""
        return self._dates(pattern)

    def previous_x_days(self, pattern: str) -> list[str]:
        """``previous_2_days``: the 2 days before those of ``last_2_days``."""
        return self._dates(pattern)

    def x_days_back(self, pattern: str) -> list[str]:
        """``7_days_back``: the one day 7 days ago."""
        return self._dates(pattern)

    def run(self, event: Any = None) -> dict[str, Any]:
        context = app.global_vars.lambda_context
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        scheduler = JobScheduler(
            self.tm,
            s3_client=self.s3_client,
            function_name=os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
        )
        return scheduler.handle(event, (lambda: remaining() / 1000) if callable(remaining) else None)

    def __call__(self, event: Any = None, *args: Any, **kwargs: Any) -> None:
        """Create the event's job (or go on creating it); returns None, as sosw's Scheduler does."""
        self.last_report = self.run(event)
        app.Processor.__call__(self, event)
