"""Reading the queue: the tasks of a labourer by state, counts, and positions in its queue.

Every state is a range of the greenfield index (DOMAIN.md "Greenfield"); a count reads a bounded
number of pages, so what the Orchestrator and the CLI read costs the same at 1k and at 100k tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Attr, ConditionBase, Key

from sosw.dynamo import count, query
from sosw.errors import InvalidInputError, QueueCeilingError
from sosw.labourer import Labourer
from sosw.tasks.context import TaskContext
from sosw.validation import check_task_id

__all__ = ["TaskQueue"]

logger = Logger(child=True)


class TaskQueue:
    """Reads and counts of the tasks tables, and where a new task goes in its queue."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx

    def get_task_by_id(self, task_id: str) -> dict[str, Any]:
        """Fetches the full data of the open Task (strongly consistent); ``{}`` if it is not open."""
        check_task_id(task_id)
        return self.ctx.get_item(self.ctx.tasks_table, {self.ctx.field("task_id"): task_id})

    def get_closed_task_by_id(self, task_id: str) -> dict[str, Any]:
        """The task from the closed table; ``{}`` if it is not closed."""
        check_task_id(task_id)
        return self.ctx.get_item(self.ctx.closed_table, {self.ctx.field("task_id"): task_id})

    def is_valid_task(self, task: dict[str, Any]) -> bool:
        """Simple validation for required fields (present, and of the right type)."""
        if not isinstance(task, dict):
            return False
        _ = self.ctx.field
        required = self.ctx.config["dynamo_db_config"].get("required_fields", [])
        if any(task.get(_(key)) in (None, "") for key in required):
            return False
        if not isinstance(task.get(_("task_id")), str) or not isinstance(task.get(_("labourer_id")), str):
            return False
        greenfield = task.get(_("greenfield"))
        return greenfield is None or (isinstance(greenfield, (int, float)) and not isinstance(greenfield, bool))

    def greenfield_query(
        self,
        labourer: Labourer,
        range_condition: Callable[[Key], ConditionBase],
        *,
        filter_condition: ConditionBase | None = None,
        ascending: bool = True,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        _ = self.ctx.field
        key = Key(_("labourer_id")).eq(labourer.id) & range_condition(Key(_("greenfield")))
        return list(
            query(
                self.ctx.dynamodb,
                table=self.ctx.tasks_table,
                index=self.ctx.config["dynamo_db_config"]["index_greenfield"],
                key_condition=key,
                filter_condition=filter_condition,
                ascending=ascending,
                limit=limit,
            )
        )

    def greenfield_count(
        self,
        labourer: Labourer,
        range_condition: Callable[[Key], ConditionBase],
        filter_condition: ConditionBase | None = None,
        max_pages: int | None = None,
    ) -> tuple[int, bool]:
        _ = self.ctx.field
        return count(
            self.ctx.dynamodb,
            table=self.ctx.tasks_table,
            index=self.ctx.config["dynamo_db_config"]["index_greenfield"],
            key_condition=Key(_("labourer_id")).eq(labourer.id) & range_condition(Key(_("greenfield"))),
            filter_condition=filter_condition,
            max_pages=max_pages,
        )

    def get_next_for_labourer(
        self, labourer: Labourer, cnt: int = 1, only_ids: bool = False
    ) -> list[str | dict[str, Any]]:
        """Fetch the next task(s) from the head of the queue for the Labourer.

        :param cnt: Optional number of Tasks to fetch.
        :param only_ids: If True, returns only the IDs of tasks.
        """
        if isinstance(cnt, bool) or not isinstance(cnt, int) or cnt < 0:
            raise InvalidInputError("cnt", f"expected an integer >= 0, got {cnt!r}", limit=">= 0")
        if cnt == 0:
            return []
        start, _invoked, _expired = self.ctx.windows(labourer)
        tasks = self.greenfield_query(labourer, lambda g: g.lt(start), limit=cnt)
        if only_ids:
            return [t[self.ctx.field("task_id")] for t in tasks]
        return list(tasks)

    def get_invoked_tasks_for_labourer(self, labourer: Labourer, completed: bool | None = None) -> list[dict[str, Any]]:
        """Tasks of the Labourer invoked during the current run of the Orchestrator.

        ``completed``: True - only completed ones, False - only not completed, None - both.
        """
        _start, invoked, _expired = self.ctx.windows(labourer)
        completed_at = Attr(self.ctx.field("completed_at"))
        filters = {True: completed_at.exists(), False: completed_at.not_exists(), None: None}
        return self.greenfield_query(labourer, lambda g: g.gte(invoked), filter_condition=filters[completed])

    def get_running_tasks_for_labourer(self, labourer: Labourer, count: bool = False) -> list[dict[str, Any]] | int:
        """Tasks invoked but not yet reported nor expired; with ``count=True`` just their number."""
        _start, _invoked, expired = self.ctx.windows(labourer)
        # No upper bound: a task claimed after this run's start (by another orchestrator) is running too.
        window = lambda g: g.gt(expired)  # noqa: E731
        if count:
            return self.greenfield_count(labourer, window, self.ctx.open_condition())[0]
        return self.greenfield_query(labourer, window, filter_condition=self.ctx.open_condition())

    def get_count_of_running_tasks_for_labourer(self, labourer: Labourer) -> int:
        """Number of tasks we assume to be still running (they may have died without a report yet)."""
        result = self.get_running_tasks_for_labourer(labourer, count=True)
        assert isinstance(result, int)
        return result

    def get_expired_tasks_for_labourer(self, labourer: Labourer) -> list[dict[str, Any]]:
        """Tasks invoked longer ago than duration + cooldown, and never reported."""
        start, _invoked, expired = self.ctx.windows(labourer)
        return self.greenfield_query(
            labourer, lambda g: g.between(start, expired), filter_condition=self.ctx.open_condition()
        )

    def get_completed_tasks_for_labourer(self, labourer: Labourer) -> list[dict[str, Any]]:
        """Tasks marked completed, waiting for the Scavenger to archive them."""
        start, _invoked, _expired = self.ctx.windows(labourer)
        return self.greenfield_query(
            labourer, lambda g: g.gte(start), filter_condition=Attr(self.ctx.field("completed_at")).exists()
        )

    def get_failed_tasks_for_labourer(self, labourer: Labourer) -> list[dict[str, Any]]:
        """Tasks whose current attempt was reported failed (the fast path: no need to wait for expiry)."""
        _ = self.ctx.field
        start, _invoked, _expired = self.ctx.windows(labourer)
        return self.greenfield_query(
            labourer,
            lambda g: g.gte(start),
            filter_condition=Attr(_("failed_at")).exists() & Attr(_("completed_at")).not_exists(),
        )

    def get_length_of_queue_for_labourer(self, labourer: Labourer) -> int:
        """Approximate count of tasks still in the queue (greenfields up to now, as sosw counts them).

        Reads at most ``queue_count_max_pages`` pages, so the cost stays flat as the queue grows; past
        that the count is estimated from the oldest and newest greenfields and the step.
        """
        bound = self.queued_bound(labourer)
        counted, complete = self.greenfield_count(
            labourer, lambda g: g.lte(bound), max_pages=self.ctx.config["queue_count_max_pages"]
        )
        if complete:
            return counted
        oldest = self.queued_greenfield(labourer, newest=False)
        newest = self.queued_greenfield(labourer, newest=True)
        if oldest is None or newest is None:
            return counted
        estimate = int((newest - oldest) // self.ctx.config["greenfield_task_step"]) + 1
        return max(counted, estimate)

    def get_queue_snapshot(self, labourer: Labourer) -> dict[str, float | int | None]:
        """Queue length (estimated from the oldest and newest greenfields) and the head task's age.

        Two one-item Queries whatever the queue's size, so a metric read every run costs the same at 1k
        and at 100k queued tasks.
        """
        _ = self.ctx.field
        start, _invoked, _expired = self.ctx.windows(labourer)
        head = self.greenfield_query(labourer, lambda g: g.lt(start), limit=1)
        if not head:
            return {"queue_length": 0, "oldest_queued_age": None}
        # The queue may change between the two reads (or the index lag behind): an empty tail means the
        # head was the last one queued.
        tail = self.greenfield_query(labourer, lambda g: g.lt(start), ascending=False, limit=1) or head
        oldest, newest = head[0][_("greenfield")], tail[0][_("greenfield")]
        length = max(1, int((newest - oldest) // self.ctx.config["greenfield_task_step"]) + 1)
        created = head[0].get(_("created_at"))
        age = max(0.0, self.ctx.clock.now() - created) if isinstance(created, (int, float)) else None
        return {"queue_length": length, "oldest_queued_age": age}

    def queued_bound(self, labourer: Labourer) -> int:
        """The upper end of the queue for the reads sosw bounds at the call's time: greenfields up to now.

        Not the run window's start: a labourer registered earlier still sees the tasks queued since. And not
        only configured labourers: sosw users' code and tests build a ``Labourer(id=..., arn=...)`` to read a
        queue by its id.
        """
        if not isinstance(labourer, Labourer):
            raise InvalidInputError("labourer", f"expected a Labourer, got {type(labourer).__name__}")
        return self.ctx.now()

    def queued_greenfield(self, labourer: Labourer, *, newest: bool) -> int | None:
        bound = self.queued_bound(labourer)
        items = self.greenfield_query(labourer, lambda g: g.lte(bound), ascending=not newest, limit=1)
        return int(items[0][self.ctx.field("greenfield")]) if items else None

    def get_oldest_greenfield_for_labourer(self, labourer: Labourer, reverse: bool = False) -> int:
        """Greenfield of the head of the queue (``reverse=True``: of its end).

        On an empty queue this is ``greenfield_task_step``, as in sosw, so that a task can still be put
        before it.
        """
        value = self.queued_greenfield(labourer, newest=reverse)
        return int(self.ctx.config["greenfield_task_step"]) if value is None else value

    def get_newest_greenfield_for_labourer(self, labourer: Labourer) -> int:
        """Greenfield of the end of the queue (the task added last)."""
        return self.get_oldest_greenfield_for_labourer(labourer, reverse=True)

    def get_tasks_to_retry_for_labourer(self, labourer: Labourer, limit: int | None = None) -> list[dict[str, Any]]:
        """Tasks in the retry table whose delay has passed, the longest-waiting first."""
        _ = self.ctx.field
        start, _invoked, _expired = self.ctx.windows(labourer)
        return list(
            query(
                self.ctx.dynamodb,
                table=self.ctx.retry_table,
                index=self.ctx.config["sosw_retry_tasks_greenfield_index"],
                key_condition=Key(_("labourer_id")).eq(labourer.id) & Key(_("desired_launch_time")).lte(start),
                limit=limit,
            )
        )

    def get_next_retry_due(self, labourer: Labourer) -> float | None:
        """When the labourer's earliest waiting retry (or delayed task) falls due; None if none waits."""
        _ = self.ctx.field
        self.ctx.check_labourer(labourer)
        items = query(
            self.ctx.dynamodb,
            table=self.ctx.retry_table,
            index=self.ctx.config["sosw_retry_tasks_greenfield_index"],
            key_condition=Key(_("labourer_id")).eq(labourer.id),
            limit=1,
        )
        first = next(iter(items), None)
        return None if first is None else float(first[_("desired_launch_time")])

    def find_task(self, task_id: str) -> tuple[str, dict[str, Any]]:
        """Where the task is now: ``("open" | "waiting" | "closed" | "unknown", task)``."""
        task = self.get_task_by_id(task_id)
        if task:
            return "open", task
        closed = self.get_closed_task_by_id(task_id)
        if closed:
            return "closed", closed
        _ = self.ctx.field
        for labourer in self.ctx.get_labourers():
            waiting = self.ctx.get_item(self.ctx.retry_table, {_("labourer_id"): labourer.id, _("task_id"): task_id})
            if waiting:
                return "waiting", waiting
        return "unknown", {}

    def get_labourer_counts(self, labourer: Labourer, max_pages: int | None = None) -> dict[str, Any]:
        """Counts of the labourer's tasks by state, each read with a bounded number of pages.

        ``complete`` is False when a count stopped at the page budget (it is then a lower bound).
        """
        _ = self.ctx.field
        pages = max_pages or self.ctx.config["queue_count_max_pages"]
        start, _invoked, expired = self.ctx.windows(labourer)
        complete = True

        def tally(result: tuple[int, bool]) -> int:
            nonlocal complete
            complete = complete and result[1]
            return result[0]

        counts: dict[str, Any] = {
            "queued": self.get_length_of_queue_for_labourer(labourer),
            "running": tally(
                self.greenfield_count(labourer, lambda g: g.gt(expired), self.ctx.open_condition(), pages)
            ),
            "expired": tally(
                self.greenfield_count(labourer, lambda g: g.between(start, expired), self.ctx.open_condition(), pages)
            ),
            "completed": tally(
                self.greenfield_count(labourer, lambda g: g.gte(start), Attr(_("completed_at")).exists(), pages)
            ),
            "failed": tally(
                self.greenfield_count(
                    labourer,
                    lambda g: g.gte(start),
                    Attr(_("failed_at")).exists() & Attr(_("completed_at")).not_exists(),
                    pages,
                )
            ),
            "waiting": tally(
                count(
                    self.ctx.dynamodb,
                    table=self.ctx.retry_table,
                    key_condition=Key(_("labourer_id")).eq(labourer.id),
                    max_pages=pages,
                )
            ),
        }
        index = self.ctx.config["sosw_closed_tasks_labourer_status_index"]
        for name, suffix in (("closed_completed", 1), ("dead", 0)):
            counts[name] = tally(
                count(
                    self.ctx.dynamodb,
                    table=self.ctx.closed_table,
                    index=index,
                    key_condition=Key(_("labourer_id_task_status")).eq(f"{labourer.id}_{suffix}"),
                    max_pages=pages,
                )
            )
        head = self.greenfield_query(labourer, lambda g: g.lt(start), limit=1)
        created = head[0].get(_("created_at")) if head else None
        counts["oldest_queued_age"] = (
            max(0.0, self.ctx.clock.now() - created) if isinstance(created, (int, float)) else None
        )
        counts["complete"] = complete
        return counts

    def ceiling(self) -> int:
        return self.ctx.now() - self.ctx.config["greenfield_ceiling_margin"]

    def check_ceiling(self, greenfield: float) -> None:
        """Never let a queued greenfield reach the invoked range; warn well before (DOMAIN.md "Ceiling")."""
        ceiling = self.ceiling()
        if greenfield >= ceiling:
            raise QueueCeilingError(
                f"greenfield: queued greenfield {greenfield} would reach the invoked range (limit: below "
                f"{ceiling}). Let the queue drain, or lower greenfield_task_step "
                f"({self.ctx.config['greenfield_task_step']})."
            )
        if greenfield >= ceiling * self.ctx.config["greenfield_ceiling_warn_ratio"]:
            logger.warning(
                "Queued greenfields are close to the invoked range",
                extra={"greenfield": greenfield, "ceiling": ceiling},
            )

    def next_greenfields(self, labourer: Labourer, n: int) -> list[int]:
        """Greenfields for ``n`` new tasks at the end of the queue (the step itself on an empty queue)."""
        step = self.ctx.config["greenfield_task_step"]
        newest = self.queued_greenfield(labourer, newest=True)
        first = step if newest is None else newest + step
        values = [first + i * step for i in range(n)]
        self.check_ceiling(values[-1])
        return values
