"""Jobs as the TaskManager offers them: ``create_job``, ``get_job``, ``cancel_job``, ``list_jobs``.

One business job becomes many tasks of one labourer (:mod:`sosw.jobs.submit`), is followed as one thing
(exact counts of its closed tasks, kept by its tasks' own close transactions: :mod:`sosw.jobs.store`), and
announces its end once (:mod:`sosw.jobs.tracking`). The facade delegates here; registering the counter
hook on the shared context is what makes every close of a job's task count.
"""

from __future__ import annotations

import datetime
import random
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from boto3.dynamodb.conditions import Attr

from sosw.dynamo import batch_get
from sosw.errors import InvalidInputError
from sosw.jobs.model import JOB_FIELDS, Job, JobState, check_job_id, task_id_for
from sosw.jobs.store import DONE, OPEN, JobStore
from sosw.jobs.submit import JobSource, JobSubmitter, config_job_schema, source_of
from sosw.jobs.tracking import JobTracker
from sosw.labourer import Labourer
from sosw.tasks.context import TaskContext
from sosw.tasks.creation import TaskCreation
from sosw.tasks.moves import TaskMoves
from sosw.tasks.queue import TaskQueue

__all__ = ["TaskJobs"]

#: Tasks read to estimate how a job's open tasks split into queued, running and waiting.
BREAKDOWN_SAMPLE = 300


class TaskJobs:
    """The jobs of one TaskManager."""

    def __init__(self, ctx: TaskContext, queue: TaskQueue, creation: TaskCreation, moves: TaskMoves) -> None:
        self.ctx = ctx
        self.queue = queue
        self.store = JobStore(ctx)
        ctx.close_hooks.append(self.store.counter_items)
        ctx.close_guard_fields.update(JOB_FIELDS)
        self.submitter = JobSubmitter(ctx, self.store, creation)
        self.tracker = JobTracker(ctx, self.store, queue, moves)

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
        """Create a job of many tasks and return it as :meth:`get_job` does; idempotent on ``job_id``."""
        source = self.source(payloads_or_job, job_schema)
        result = self.submitter.submit(
            source,
            labourer,
            job_id=job_id,
            tolerated_failure_percentage=tolerated_failure_percentage,
            today=today,
            remaining=remaining,
        )
        job = result.job
        if job.state in (JobState.FAILING, JobState.CANCELLING) and job.created < job.total:
            self.tracker.settle_total(job)  # stopped while being created (by this run or one that died)
        return {**self._describe(job), "complete": result.complete, "created_now": result.created_now}

    def source(self, payloads_or_job: Any, job_schema: Mapping[str, Any] | None = None) -> JobSource:
        return source_of(payloads_or_job, job_schema if job_schema is not None else config_job_schema(self.ctx.config))

    def get_job(self, job_id: str, *, breakdown: bool = False) -> dict[str, Any]:
        """The job, its exact counts of closed tasks and its progress; ``breakdown`` estimates the open ones."""
        job = self._job(job_id)
        described = self._describe(job)
        if breakdown and not job.ended:
            described["breakdown"] = self._breakdown(job, described["open"])
        return described

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        """Cancel the job: its queued and waiting tasks are closed as cancelled now; running ones finish.

        A job that has ended is left as it is. The end event (``Job Cancelled``) follows once every task
        is closed: at once if none was running, else on the Scavenger run after the last one closes.
        """
        job = self._job(job_id)
        if job.state in (JobState.CREATING, JobState.RUNNING):
            if not self.store.update(
                job_id, {"state": JobState.CANCELLING.value}, condition=Attr("state").eq(job.state.value)
            ):
                job = self._job(job_id)  # it moved on meanwhile (failed, or ended): go on from there
            else:
                job.state = JobState.CANCELLING
        if not job.ended:
            self.tracker.sweep(job, reason=f"job {job_id} cancelled")
            self.tracker.check(job_id)
        return self.get_job(job_id)

    def list_jobs(self, *, limit: int = 20, ended: bool | None = None) -> list[dict[str, Any]]:
        """Jobs newest first (headers only, no counts): open ones, ended ones, or both (``ended=None``)."""
        lists = {None: (OPEN, DONE), False: (OPEN,), True: (DONE,)}[ended]
        headers = [h for which in lists for h in self.store.list(which, limit=limit)]
        headers.sort(key=lambda h: h.get("created_at", 0), reverse=True)
        return [
            {k: h.get(k) for k in ("job_id", "labourer_id", "state", "total", "created_at", "ended_at", "end_counts")}
            for h in headers[:limit]
        ]

    def track(self, remaining: Callable[[], float] | None = None) -> Counter[str]:
        """One tracker pass over the open jobs (the Scavenger Lambda runs it after its own work)."""
        return self.tracker.run(remaining)

    # ------------------------------------------------------------------ reading

    def _job(self, job_id: str) -> Job:
        job = self.store.get(check_job_id(job_id))
        if job is None:
            raise InvalidInputError("job_id", f"no job {job_id!r}")
        return job

    def _describe(self, job: Job) -> dict[str, Any]:
        job.counts = self.store.counts(job.job_id, job.shards)
        return job.as_dict()

    def _breakdown(self, job: Job, open_count: int) -> dict[str, Any]:
        """How the open tasks split, from a sample of the job's ids: estimates unless the sample is every id."""
        _ = self.ctx.field
        population = range(min(job.created, job.total))
        if len(population) <= BREAKDOWN_SAMPLE:
            indexes = list(population)
        else:
            indexes = sorted(random.Random(job.job_id).sample(population, BREAKDOWN_SAMPLE))
        ids = [task_id_for(job.job_id, i) for i in indexes]
        settings = self.ctx.retry_settings()
        tally: Counter[str] = Counter()
        ceiling = self.queue.ceiling()
        for row in batch_get(self.ctx.dynamodb, self.ctx.tasks_table, [{_("task_id"): i} for i in ids], **settings):
            tally["queued" if row.get(_("greenfield"), 0) < ceiling else "running"] += 1
        keys = [{_("labourer_id"): job.labourer_id, _("task_id"): i} for i in ids]
        tally["waiting"] = len(batch_get(self.ctx.dynamodb, self.ctx.retry_table, keys, **settings))
        seen = sum(tally.values())
        exact = len(indexes) == job.total
        scale = open_count / seen if seen else 0.0
        result: dict[str, Any] = {
            k: (tally[k] if exact else round(tally[k] * scale)) for k in ("queued", "running", "waiting")
        }
        result["estimated"] = not exact
        result["sampled"] = len(indexes)
        return result
