"""How long a labourer's tasks take: sosw's ``get_average_labourer_duration``, computed as sosw 0.7.51 does.

It reads only what sosw's closed-tasks index projects (``completed_at``, ``greenfield``, ``attempts``), so it
works on sosw's tables as on the stack's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from boto3.dynamodb.conditions import Key

from sosw.dynamo import query
from sosw.labourer import Labourer
from sosw.tasks.context import TaskContext

__all__ = ["TaskDurations"]


class TaskDurations:
    """The average duration of a labourer's recently closed tasks."""

    def __init__(self, ctx: TaskContext) -> None:
        self.ctx = ctx

    def get_average_labourer_duration(self, labourer: Labourer, max_duration: Callable[[Labourer], float]) -> int:
        """Average duration of the labourer's last closed tasks, in whole seconds; 0 when there is none.

        As sosw computes it: the newest ``max_closed_to_analyse_for_duration`` tasks closed completed and as
        many closed otherwise (dead, cancelled) are read; of those, the that many invoked first count. A
        completed task counts the time from its last invocation to its completion; any other counts
        ``max_duration`` (the worker's timeout) once per attempt, since it ran until it failed or timed out.
        ``max_duration`` is asked for only when such a task is counted.
        """
        _ = self.ctx.field
        self.ctx.check_labourer(labourer)
        limit = self.ctx.config["max_closed_to_analyse_for_duration"]
        rows: list[dict[str, Any]] = []
        for status in (1, 0):
            rows += query(
                self.ctx.dynamodb,
                table=self.ctx.closed_table,
                index=self.ctx.config["sosw_closed_tasks_labourer_status_index"],
                key_condition=Key(_("labourer_id_task_status")).eq(f"{labourer.id}_{status}"),
                ascending=False,
                limit=limit,
            )
        # sosw sorts by greenfield and keeps the first ones; a row without one (sosw would fail on it) is left out
        rows = sorted(
            (r for r in rows if isinstance(r.get(_("greenfield")), int | float)), key=lambda r: r[_("greenfield")]
        )
        delta = self.ctx.config["greenfield_invocation_delta"]
        durations: list[float] = []
        for row in rows[:limit]:
            completed_at = row.get(_("completed_at"))
            if isinstance(completed_at, int | float):
                durations.append(completed_at - row[_("greenfield")] + delta)
            else:
                durations += [max_duration(labourer)] * int(row.get(_("attempts")) or 0)
        return round(sum(durations) / len(durations)) if durations else 0
