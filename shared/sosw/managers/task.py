"""The TaskManager: sosw's facade over the task lifecycle, one step module each (``sosw.tasks``).

Every method of sosw's TaskManager (the seed) keeps its name, arguments and meaning here, and
delegates to the step that does the work: ``queue`` (reads and counts), ``creation``, ``claims``
(claim and invoke), ``reports`` (start guard, completion, failure), ``moves`` (archive, retry,
cancel, prioritise) and ``dead`` (dead tasks, redrive). New capabilities land as modules beside those,
not as bodies here: jobs (``sosw.jobs``) are one.
"""

from __future__ import annotations

import datetime
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aws_lambda_powertools import Logger

from sosw.clock import Clock, SystemClock
from sosw.config import DEFAULT_CONFIG, build_config
from sosw.errors import UnknownLabourerError
from sosw.jobs.api import TaskJobs
from sosw.labourer import Labourer
from sosw.managers.ecology import EcologyManager
from sosw.tasks import compat
from sosw.tasks.claims import TaskClaims
from sosw.tasks.context import TaskContext
from sosw.tasks.creation import TaskCreation
from sosw.tasks.dead import DeadTasks
from sosw.tasks.durations import TaskDurations
from sosw.tasks.model import (
    NOTIFY_PENDING,
    REDRIVE_OFFSET,
    WORKER_EVENT_FIELDS,
    CreatedTask,
    InvokeResult,
    ReportOutcome,
    ReportResult,
)
from sosw.tasks.moves import TaskMoves
from sosw.tasks.queue import TaskQueue
from sosw.tasks.reports import TaskReports

__all__ = [
    "NOTIFY_PENDING",
    "REDRIVE_OFFSET",
    "WORKER_EVENT_FIELDS",
    "CreatedTask",
    "InvokeResult",
    "ReportOutcome",
    "ReportResult",
    "TaskManager",
]

logger = Logger(child=True)


class TaskManager:
    """Handles every operation on tasks (sosw's TaskManager, on DynamoDB).

    ``TaskManager(custom_config={...})`` makes no AWS call: clients are created on first use, as plain
    boto3 clients, or injected (``dynamodb_client=``, ``lambda_client=``, ``ecology_client=``). Time
    comes from ``clock`` (the system clock by default).
    """

    DEFAULT_CONFIG = DEFAULT_CONFIG

    def __init__(
        self,
        custom_config: Mapping[str, Any] | None = None,
        *,
        clock: Clock | None = None,
        dynamodb_client: Any = None,
        lambda_client: Any = None,
        ecology_client: EcologyManager | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            # The seed's signature takes **kwargs (sosw's Processor options): accepted, unused, and said so.
            logger.warning("TaskManager ignores keyword argument(s)", extra={"ignored": sorted(kwargs)})
        self._ctx = TaskContext(
            build_config(custom_config),
            clock or SystemClock(),
            dynamodb_client=dynamodb_client,
            lambda_client=lambda_client,
        )
        self._ecology_client = ecology_client
        self._queue = TaskQueue(self._ctx)
        self._creation = TaskCreation(self._ctx, self._queue)
        self._claims = TaskClaims(self._ctx, self._queue)
        self._reports = TaskReports(self._ctx)
        self._moves = TaskMoves(self._ctx, self._queue)
        self._dead = DeadTasks(self._ctx, self._queue, self._moves)
        self._durations = TaskDurations(self._ctx)
        self._jobs = TaskJobs(self._ctx, self._queue, self._creation, self._moves)

    # ------------------------------------------------------------------ clients and config

    @property
    def config(self) -> dict[str, Any]:
        return self._ctx.config

    @property
    def clock(self) -> Clock:
        return self._ctx.clock

    @property
    def stats(self) -> Counter[str]:
        return self._ctx.stats

    # The clients are settable, as sosw's plain attributes are (its users' tests assign MagicMocks): every
    # step reads them from the shared context, so a replaced client is the one used from then on.

    @property
    def dynamo_db_client(self) -> Any:
        return self._ctx.dynamodb

    @dynamo_db_client.setter
    def dynamo_db_client(self, client: Any) -> None:
        self._ctx.dynamodb = client

    @property
    def remaining_seconds(self) -> Callable[[], float] | None:
        """The caller's time left (a Lambda's): retries of DynamoDB's refusals under load stop before it ends."""
        return self._ctx.remaining

    @remaining_seconds.setter
    def remaining_seconds(self, remaining: Callable[[], float] | None) -> None:
        self._ctx.remaining = remaining

    @property
    def lambda_client(self) -> Any:
        return self._ctx.lambda_client

    @lambda_client.setter
    def lambda_client(self, client: Any) -> None:
        self._ctx.lambda_client = client

    @property
    def ecology_client(self) -> EcologyManager:
        if self._ecology_client is None:
            self._ecology_client = EcologyManager(self.config, clock=self.clock, lambda_client=self._ctx._lambda)
        return self._ecology_client

    @ecology_client.setter
    def ecology_client(self, client: EcologyManager) -> None:
        self._ecology_client = client

    @property
    def tasks_table(self) -> str:
        return self._ctx.tasks_table

    @property
    def retry_table(self) -> str:
        return self._ctx.retry_table

    @property
    def closed_table(self) -> str:
        return self._ctx.closed_table

    def get_db_field_name(self, key: str) -> str:
        """Could be useful if you overwrite field names with your own ones (e.g. for tests)."""
        return self._ctx.field(key)

    # ------------------------------------------------------------------ labourers

    def get_labourers(self) -> list[Labourer]:
        """Return configured Labourers (config ``labourers``: ``{name_of_lambda: {setting: value}}``)."""
        return self._ctx.get_labourers()

    def get_labourer(self, labourer_id: str | int) -> Labourer | None:
        """The configured Labourer with this id; None if there is none, as in sosw.

        Every method that takes a labourer refuses None with an ``InvalidInputError`` naming ``labourer``.
        """
        if isinstance(labourer_id, int) and not isinstance(labourer_id, bool):
            labourer_id = str(labourer_id)  # ids are text, as stored in the tables
        try:
            return self._ctx.get_labourer(labourer_id)
        except UnknownLabourerError:
            return None

    def register_labourers(self) -> list[Labourer]:
        """Sets timestamps, health status and other custom attributes on the configured Labourers.

        The EcologyManager is given this TaskManager for its two queries (running count, average
        duration), so that it does not build a second one.
        """
        ecology = self.ecology_client
        ecology.register_task_manager(self)
        self.open_run_window()
        for labourer in self.get_labourers():
            labourer.set_custom_attribute("health", ecology.get_labourer_status(labourer))
            if not labourer.has_attr("max_duration"):
                labourer.set_custom_attribute("max_duration", ecology.get_labourer_max_duration(labourer))
            labourer.set_custom_attribute("average_duration", ecology.get_labourer_average_duration(labourer))
        return self.get_labourers()

    def open_run_window(self) -> list[Labourer]:
        """Set ``start``, ``invoked`` and ``expired`` on every labourer: the greenfield windows of this run.

        The part of registration that needs no AWS call; the Scavenger uses it alone (it needs no health).
        """
        return self._ctx.open_run_window()

    # ------------------------------------------------------------------ creation (sosw.tasks.creation)

    def construct_payload_for_task(self, **kwargs: Any) -> str:
        """Combines remaining kwargs to a singular JSON payload."""
        return self._creation.construct_payload_for_task(**kwargs)

    def create_task(self, labourer: Labourer, strict: bool = True, **kwargs: Any) -> dict[str, Any]:
        """Schedule a new task at the end of the labourer's queue; returns the task as stored."""
        return self._creation.create_task(labourer, strict, **kwargs)

    def create_tasks(
        self,
        labourer: Labourer,
        payloads: Iterable[Mapping[str, Any]],
        *,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[str]:
        """Create many tasks at the end of the queue, in order, with BatchWriteItem; returns their ids."""
        return self._creation.create_tasks(labourer, payloads, on_progress=on_progress)

    def ensure_tasks(self, labourer: Labourer, tasks: Mapping[str, Mapping[str, Any]]) -> list[CreatedTask]:
        """Idempotent creation with caller-chosen ids: ``{task_id: payload}``, queued in that order."""
        return self._creation.ensure_tasks(labourer, tasks)

    def ensure_task(self, labourer: Labourer, task_id: str, payload: Mapping[str, Any]) -> CreatedTask:
        """Idempotent creation of one task (see :meth:`ensure_tasks`)."""
        return self._creation.ensure_task(labourer, task_id, payload)

    def create_priority_task(
        self, labourer: Labourer, payload: Mapping[str, Any], *, task_id: str | None = None
    ) -> dict[str, Any]:
        """Create a task at the head of the queue: it is invoked before every task already queued."""
        return self._creation.create_priority_task(labourer, payload, task_id=task_id)

    def create_delayed_task(
        self, labourer: Labourer, payload: Mapping[str, Any], delay: int, *, task_id: str | None = None
    ) -> dict[str, Any]:
        """Create a task that waits ``delay`` seconds in the retry table, then joins the head of the queue."""
        return self._creation.create_delayed_task(labourer, payload, delay, task_id=task_id)

    # ------------------------------------------------------------------ reading (sosw.tasks.queue)

    def get_task_by_id(self, task_id: str) -> dict[str, Any]:
        """Fetches the full data of the open Task (strongly consistent); ``{}`` if it is not open."""
        return compat.decoded(self._queue.get_task_by_id(task_id))

    def get_closed_task_by_id(self, task_id: str) -> dict[str, Any]:
        """The task from the closed table; ``{}`` if it is not closed."""
        return compat.decoded(self._queue.get_closed_task_by_id(task_id))

    def is_valid_task(self, task: dict[str, Any]) -> bool:
        """Simple validation for required fields (present, and of the right type)."""
        return self._queue.is_valid_task(task)

    def get_next_for_labourer(
        self, labourer: Labourer, cnt: int = 1, only_ids: bool = False
    ) -> list[str | dict[str, Any]]:
        """Fetch the next task(s) from the head of the queue for the Labourer."""
        return compat.decoded_all(self._queue.get_next_for_labourer(labourer, cnt, only_ids))

    def get_invoked_tasks_for_labourer(self, labourer: Labourer, completed: bool | None = None) -> list[dict[str, Any]]:
        """Tasks of the Labourer invoked during the current run of the Orchestrator."""
        return compat.decoded_all(self._queue.get_invoked_tasks_for_labourer(labourer, completed))

    def get_running_tasks_for_labourer(self, labourer: Labourer, count: bool = False) -> list[dict[str, Any]] | int:
        """Tasks invoked but not yet reported nor expired; with ``count=True`` just their number."""
        running = self._queue.get_running_tasks_for_labourer(labourer, count)
        return running if isinstance(running, int) else compat.decoded_all(running)

    def get_count_of_running_tasks_for_labourer(self, labourer: Labourer) -> int:
        """Number of tasks we assume to be still running (they may have died without a report yet)."""
        return self._queue.get_count_of_running_tasks_for_labourer(labourer)

    def get_expired_tasks_for_labourer(self, labourer: Labourer) -> list[dict[str, Any]]:
        """Tasks invoked longer ago than duration + cooldown, and never reported."""
        return compat.decoded_all(self._queue.get_expired_tasks_for_labourer(labourer))

    def get_completed_tasks_for_labourer(self, labourer: Labourer) -> list[dict[str, Any]]:
        """Tasks marked completed, waiting for the Scavenger to archive them."""
        return compat.decoded_all(self._queue.get_completed_tasks_for_labourer(labourer))

    def get_failed_tasks_for_labourer(self, labourer: Labourer) -> list[dict[str, Any]]:
        """Tasks whose current attempt was reported failed (the fast path: no need to wait for expiry)."""
        return compat.decoded_all(self._queue.get_failed_tasks_for_labourer(labourer))

    def get_length_of_queue_for_labourer(self, labourer: Labourer) -> int:
        """Approximate count of tasks still in the queue (greenfield below the start of this run)."""
        return self._queue.get_length_of_queue_for_labourer(labourer)

    def get_queue_snapshot(self, labourer: Labourer) -> dict[str, float | int | None]:
        """Queue length (estimated from the oldest and newest greenfields) and the head task's age."""
        return self._queue.get_queue_snapshot(labourer)

    def get_oldest_greenfield_for_labourer(self, labourer: Labourer, reverse: bool = False) -> int:
        """Greenfield of the head of the queue (``reverse=True``: of its end)."""
        return self._queue.get_oldest_greenfield_for_labourer(labourer, reverse)

    def get_newest_greenfield_for_labourer(self, labourer: Labourer) -> int:
        """Greenfield of the end of the queue (the task added last)."""
        return self._queue.get_newest_greenfield_for_labourer(labourer)

    def get_tasks_to_retry_for_labourer(self, labourer: Labourer, limit: int | None = None) -> list[dict[str, Any]]:
        """Tasks in the retry table whose delay has passed, the longest-waiting first."""
        return compat.decoded_all(self._queue.get_tasks_to_retry_for_labourer(labourer, limit))

    def get_next_retry_due(self, labourer: Labourer) -> float | None:
        """When the labourer's earliest waiting retry (or delayed task) falls due; None if none waits."""
        return self._queue.get_next_retry_due(labourer)

    def get_average_labourer_duration(self, labourer: Labourer) -> int:
        """Average duration of the last closed tasks, in seconds, as sosw computes it (0 when there is none)."""
        return self._durations.get_average_labourer_duration(labourer, self._max_duration)

    def _max_duration(self, labourer: Labourer) -> float:
        # What a failed or timed-out attempt counts for: the labourer's setting, else the worker's Lambda Timeout.
        if not labourer.has_attr("max_duration"):
            labourer.set_custom_attribute("max_duration", self.ecology_client.get_labourer_max_duration(labourer))
        return labourer.get_attr("max_duration")

    def find_task(self, task_id: str) -> tuple[str, dict[str, Any]]:
        """Where the task is now: ``("open" | "waiting" | "closed" | "unknown", task)``."""
        status, task = self._queue.find_task(task_id)
        return status, compat.decoded(task)

    def get_labourer_counts(self, labourer: Labourer, max_pages: int | None = None) -> dict[str, Any]:
        """Counts of the labourer's tasks by state, each read with a bounded number of pages."""
        return self._queue.get_labourer_counts(labourer, max_pages)

    # ------------------------------------------------------------------ claiming and invoking (sosw.tasks.claims)

    def mark_task_invoked(
        self, labourer: Labourer, task: dict[str, Any], check_running: bool | None = True, *, cap: int | None = None
    ) -> dict[str, Any]:
        """Claim the task: greenfield = now + ``greenfield_invocation_delta``, attempts + 1, a slot taken.

        :raises RuntimeError:
        """
        return compat.decoded(self._claims.mark_task_invoked(labourer, compat.stored(task), check_running, cap=cap))

    def invoke_task(
        self,
        labourer: Labourer,
        task_id: str | None = None,
        task: dict[str, Any] | None = None,
        *,
        cap: int | None = None,
    ) -> InvokeResult:
        """Claim the task and invoke the worker Lambda asynchronously with it."""
        return self._claims.invoke_task(labourer, task_id, compat.stored(task), cap=cap)

    def claim_tasks(self, labourer: Labourer, tasks: list[dict[str, Any]], cap: int) -> list[dict[str, Any]]:
        """Claim queued tasks together (one transaction per 99), within ``cap`` running; returns those claimed."""
        return compat.decoded_all(self._claims.claim_tasks(labourer, compat.stored_all(tasks), cap))

    def invoke_claimed_task(self, labourer: Labourer, claimed: dict[str, Any]) -> InvokeResult:
        """Invoke the worker with a task claimed by :meth:`claim_tasks`; a refused Invoke releases the claim."""
        return self._claims.invoke_claimed(labourer, compat.stored(claimed))

    def release_claimed_task(self, labourer: Labourer, claimed: dict[str, Any]) -> bool:
        """Give back a claim that was not invoked: head of the queue, attempt and slot returned."""
        return self._claims.release_claim(labourer, compat.stored(claimed))

    def get_running_counts(self, labourers: list[Labourer]) -> dict[str, int]:
        """Tasks holding a slot, per labourer id: exact (the slot counters), not the eventually consistent index."""
        return self._claims.slots.running(lab.id for lab in labourers)

    def worker_event(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """The event a worker receives: its payload merged with the task's own fields (task_id, attempts, ...)."""
        return self._claims.worker_event(compat.stored(task))

    # ------------------------------------------------------------------ reports from workers (sosw.tasks.reports)

    def mark_task_completed(
        self,
        task_id: str,
        *,
        attempt: int | None = None,
        result: Any = None,
        stats: Any = None,
        labourer_id: str | None = None,
    ) -> ReportResult:
        """Record that the worker completed the task's current attempt."""
        return self._reports.mark_task_completed(
            task_id, attempt=attempt, result=result, stats=stats, labourer_id=labourer_id
        )

    def complete_and_archive_task(
        self, task: Mapping[str, Any], *, attempt: int, result: Any = None, stats: Any = None
    ) -> ReportResult:
        """Completion that closes the task at once: one transaction instead of an update now and a move later."""
        return self._reports.complete_and_archive_task(compat.stored(task), attempt=attempt, result=result, stats=stats)

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
        return self._reports.mark_task_failed(
            task_id,
            attempt=attempt,
            error_type=error_type,
            error_message=error_message,
            result=result,
            stats=stats,
            labourer_id=labourer_id,
        )

    def mark_task_started(
        self, task_id: str, attempt: int, *, token: str | None = None, labourer_id: str | None = None
    ) -> ReportResult:
        """The duplicate-delivery guard: let exactly one delivery of an attempt run the work."""
        return self._reports.mark_task_started(task_id, attempt, token=token, labourer_id=labourer_id)

    # ------------------------------------------------------------------ moves between tables (sosw.tasks.moves)

    def archive_task(self, task: dict[str, Any] | str, completed: bool | None = None) -> bool:
        """Close the task: move it to the closed table, completed or dead, in one transaction.

        ``task`` is the task as read, or (sosw's form) its id: the open task is then read first. False when
        nothing was moved (an id that is not open, a stale or repeated archive).
        """
        if isinstance(task, str):
            task = self._queue.get_task_by_id(task)
            if not task:
                return False
        return self._moves.archive_task(compat.stored(task), completed)

    def move_task_to_retry_table(self, task: dict[str, Any], wanted_delay: int) -> bool:
        """Move the task to the retry table, to be queued again after ``wanted_delay`` seconds."""
        return self._moves.move_task_to_retry_table(compat.stored(task), wanted_delay)

    def retry_task(self, task: dict[str, Any], labourer_id: str, greenfield: int) -> bool:
        """Move the task from the retry table to the tasks table with ``greenfield`` (the head of the queue)."""
        return self._moves.retry_task(compat.stored(task), labourer_id, greenfield)

    def retry_tasks(self, labourer: Labourer, tasks: list[dict[str, Any]]) -> int:
        """Queue tasks from the retry table at the head of the queue, in the given order; returns how many moved."""
        return self._moves.retry_tasks(labourer, compat.stored_all(tasks))

    def cancel_task(self, task_id: str) -> bool:
        """Close a queued or waiting task with the error ``Cancelled``; False if it is neither any more."""
        return self._moves.cancel_task(task_id)

    def prioritise_task(self, task_id: str) -> bool:
        """Move a queued task to the head of its queue; False if it is not queued any more."""
        return self._moves.prioritise_task(task_id)

    # ------------------------------------------------------------------ dead tasks (sosw.tasks.dead)

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
        """Dead tasks of a labourer, newest first, filtered by last error type and closing time."""
        dead = self._dead.get_dead_tasks(
            labourer,
            error_type=error_type,
            closed_after=closed_after,
            closed_before=closed_before,
            limit=limit,
            notification_pending=notification_pending,
        )
        return compat.decoded_all(dead)

    def mark_dead_task_notified(self, task_id: str) -> None:
        """The dead-task notification of this closed task was published."""
        self._dead.mark_dead_task_notified(task_id)

    def redrive_task(self, task: dict[str, Any]) -> bool:
        """Send a dead task back to the end of its queue, with max_attempts afresh, in one transaction."""
        return self._dead.redrive_task(compat.stored(task))

    # ------------------------------------------------------------------ jobs (sosw.jobs)

    @property
    def jobs(self) -> TaskJobs:
        """The jobs of this TaskManager (sources, preview, the tracker), for what the methods below don't say."""
        return self._jobs

    def create_job(
        self,
        labourer: Labourer | str | None,
        payloads_or_job: Any,
        *,
        job_id: str | None = None,
        tolerated_failure_percentage: float = 0,
        job_schema: Mapping[str, Any] | None = None,
        today: datetime.date | None = None,
        remaining: Callable[[], float] | None = None,
    ) -> dict[str, Any]:
        """One business job as many tasks, followed as one thing; idempotent on ``job_id``.

        ``payloads_or_job``: a list of payload dicts (one task each), or a job in sosw's Scheduler format
        (a mapping; chunked by ``job_schema``, by default the config's ``job_schema`` /
        ``job_schema_variants``, as sosw 0.7.51 chunks it, with ``today`` as its date). The job fails
        when its dead tasks exceed ``tolerated_failure_percentage`` of its total. Returns :meth:`get_job`'s
        answer, plus ``complete`` (False when ``remaining`` ran out: call again with the same ``job_id``).

        >>> tm.create_job("resize", [{"key": f"{i}.png"} for i in range(40_000)], job_id="resize-2024-05")
        """
        return self._jobs.create_job(
            labourer,
            payloads_or_job,
            job_id=job_id,
            tolerated_failure_percentage=tolerated_failure_percentage,
            job_schema=job_schema,
            today=today,
            remaining=remaining,
        )

    def get_job(self, job_id: str, *, breakdown: bool = False) -> dict[str, Any]:
        """The job: state, total, exact counts of its closed tasks (completed, dead, cancelled), progress."""
        return self._jobs.get_job(job_id, breakdown=breakdown)

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancel the job's queued and waiting tasks (running ones finish); its end event follows."""
        return self._jobs.cancel_job(job_id)

    def list_jobs(self, *, limit: int = 20, ended: bool | None = None) -> list[dict[str, Any]]:
        """Jobs, newest first."""
        return self._jobs.list_jobs(limit=limit, ended=ended)

    def track_jobs(self, remaining: Callable[[], float] | None = None) -> Counter[str]:
        """One pass over the open jobs: failure past the tolerance, cancelling, the end event (once)."""
        return self._jobs.track(remaining)
