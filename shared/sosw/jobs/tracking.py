"""Following jobs: failure past the tolerance, cancelling what has not run, and the end event, once.

Counting costs nothing here: every close adds one counter update to its own transaction (the close hook
of :class:`~sosw.jobs.store.JobStore`). What this module does runs once per job per Scavenger run (every
minute), whatever the job's size:

- **Failure.** When dead tasks exceed ``tolerated_failure_percentage`` of the total (strictly more), the
  job becomes ``failing``: its queued and waiting tasks are cancelled (closed as ``cancelled``, counted
  apart from dead), its running ones finish. A sweep reads the job's task ids (known: ``<job_id>.<i>``)
  100 at a time, and repeats while tasks remain open, since a running task that fails goes to the retry
  table and is cancelled there.
- **The end.** When every task is closed, one conditional update moves the job to its end state and
  sets ``notify_pending`` with the final counts; then the event is published and the mark cleared. A crash
  between the two leaves the mark: the next run publishes it. A short lease on the mark keeps two
  trackers running at once from both publishing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Attr

from sosw import aws
from sosw.dynamo import batch_get
from sosw.jobs import events
from sosw.jobs.model import END_STATES, Job, JobCounts, JobState, task_id_for
from sosw.jobs.store import DONE, OPEN, JobStore
from sosw.tasks.context import TaskContext
from sosw.tasks.moves import TaskMoves
from sosw.tasks.queue import TaskQueue

__all__ = ["JobTracker"]

logger = Logger(child=True)

#: Task ids read per request when sweeping a failing or cancelled job.
SWEEP_BATCH = 100
#: How long a tracker holds the right to publish a job's end event (then another may, after a crash).
NOTIFY_LEASE_SECONDS = 60
#: A job's creation that has not moved for this long (Lambda's longest run, and a margin) has stopped.
CREATION_QUIET_SECONDS = 960


class JobTracker:
    """``JobTracker(ctx, store, queue, moves).run(remaining_seconds)``: one pass over the open jobs."""

    def __init__(
        self, ctx: TaskContext, store: JobStore, queue: TaskQueue, moves: TaskMoves, events_client: Any = None
    ) -> None:
        self.ctx = ctx
        self.store = store
        self.queue = queue
        self.moves = moves
        self._events = events_client
        self._remaining: Callable[[], float] | None = None

    @property
    def events_client(self) -> Any:
        if self._events is None:
            self._events = aws.events_client()
        return self._events

    @events_client.setter
    def events_client(self, client: Any) -> None:
        self._events = client

    def _time_left(self) -> bool:
        safety = float(self.ctx.config.get("scavenger_safety_seconds", 5))
        return self._remaining is None or self._remaining() > safety

    def run(self, remaining_seconds: Callable[[], float] | None = None) -> Counter[str]:
        """Check every open job once; stop ``safety`` seconds before ``remaining_seconds`` ends."""
        self._remaining = remaining_seconds
        stats: Counter[str] = Counter()
        try:
            for header in list(self.store.list(OPEN)):
                if not self._time_left():
                    break
                try:
                    self.check(header["job_id"], stats)
                except Exception:  # one job's trouble must not stop the others
                    stats["errors"] += 1
                    logger.exception("Checking a job failed", extra={"job_id": header.get("job_id")})
        finally:
            self._remaining = None  # this run's clock; a later cancel_job is not bounded by it
        if stats:
            logger.info("Jobs checked", extra={"counts": dict(stats)})
        return stats

    def check(self, job_id: str, stats: Counter[str] | None = None) -> Job | None:
        """Bring one job forward: fail it, sweep it, end it, publish its end, as its counts say."""
        stats = stats if stats is not None else Counter()
        job = self.store.get(job_id)
        if job is None:
            return None
        stats["jobs_checked"] += 1
        if job.ended:
            if job.notify_pending:
                self.publish(job, stats)
            elif job.raw.get("job_list") == OPEN:
                self.store.update(job_id, {"job_list": DONE}, condition=Attr("notify_pending").not_exists())
            return job
        counts = self.store.counts(job_id, job.shards)
        now = round(self.ctx.clock.now(), 3)
        if job.state in (JobState.CREATING, JobState.RUNNING) and job.fails_with(counts):
            if not self.store.update(
                job_id,
                {"state": JobState.FAILING.value, "failed_at": now, "failed_with": counts.as_dict()},
                condition=Attr("state").eq(job.state.value),
            ):
                return job  # changed meanwhile: the next run sees the new state
            logger.warning(
                "Job failed: too many dead tasks",
                extra={"job_id": job_id, "dead": counts.dead, "total": job.total, **counts.as_dict()},
            )
            stats["jobs_failed"] += 1
            job.state, job.failed_at = JobState.FAILING, now
        if job.state in (JobState.FAILING, JobState.CANCELLING) and job.created < job.total:
            quiet = self.ctx.now() - int(job.raw.get("creating_at") or job.created_at)
            if quiet > CREATION_QUIET_SECONDS:  # its creating run died for good: count what exists
                self.settle_total(job)
        if job.state in (JobState.FAILING, JobState.CANCELLING) and self.sweep(job, stats):
            counts = self.store.counts(job_id, job.shards)  # what the sweep cancelled
        if job.state is not JobState.CREATING and counts.closed >= job.total:
            end = END_STATES[job.state]
            ended = self.store.update(
                job_id,
                {"state": end.value, "ended_at": now, "end_counts": counts.as_dict(), "notify_pending": True},
                condition=Attr("state").eq(job.state.value) & Attr("total").eq(job.total),
            )
            if ended:
                stats[f"jobs_{end.value}"] += 1
                logger.info("Job ended", extra={"job_id": job_id, "state": end.value, **counts.as_dict()})
                job = self.store.get(job_id) or job
                self.publish(job, stats)
        return job

    # ------------------------------------------------------------------ cancelling what has not run

    def sweep(self, job: Job, stats: Counter[str] | None = None, *, reason: str | None = None) -> int:
        """Cancel the job's queued and waiting tasks, from the header's sweep cursor; returns how many.

        Bounded by the time left: the cursor is saved and the next run goes on. A finished pass starts
        over at 0 the next time, for tasks that were running and came back to the retry table.
        """
        stats = stats if stats is not None else Counter()
        why = reason or (
            f"job {job.job_id} failed: too many dead tasks"
            if job.state is JobState.FAILING
            else f"job {job.job_id} was cancelled"
        )
        _ = self.ctx.field
        cursor = int(job.raw.get("sweep_cursor", 0))
        cancelled = 0
        while cursor < job.total:
            if not self._time_left():
                self.store.update(job.job_id, {"sweep_cursor": cursor})
                return cancelled
            ids = [task_id_for(job.job_id, i) for i in range(cursor, min(cursor + SWEEP_BATCH, job.total))]
            settings = self.ctx.retry_settings()
            for row in batch_get(self.ctx.dynamodb, self.ctx.tasks_table, [{_("task_id"): i} for i in ids], **settings):
                cancelled += self.moves.cancel_found("open", row, why)
            waiting_keys = [{_("labourer_id"): job.labourer_id, _("task_id"): i} for i in ids]
            for row in batch_get(self.ctx.dynamodb, self.ctx.retry_table, waiting_keys, **settings):
                cancelled += self.moves.cancel_found("waiting", row, why)
            cursor += len(ids)
        if job.raw.get("sweep_cursor"):
            self.store.update(job.job_id, {"sweep_cursor": 0})
        stats["tasks_cancelled"] += cancelled
        if cancelled:
            logger.info("Job tasks cancelled", extra={"job_id": job.job_id, "cancelled": cancelled})
        return cancelled

    def settle_total(self, job: Job) -> int:
        """A job stopped while its tasks were created: its total becomes the tasks that exist.

        Tasks are created in order, one transaction after another, so those that exist are a prefix of
        the job's indexes: the first index found in none of the three tables is the new total.
        """
        _ = self.ctx.field
        settings = self.ctx.retry_settings()
        index = job.created
        while index < job.total:
            ids = [task_id_for(job.job_id, i) for i in range(index, min(index + SWEEP_BATCH, job.total))]
            keys = [{_("task_id"): i} for i in ids]
            found = {r[_("task_id")] for r in batch_get(self.ctx.dynamodb, self.ctx.tasks_table, keys, **settings)}
            found |= {r[_("task_id")] for r in batch_get(self.ctx.dynamodb, self.ctx.closed_table, keys, **settings)}
            waiting = [{_("labourer_id"): job.labourer_id, _("task_id"): i} for i in ids]
            found |= {r[_("task_id")] for r in batch_get(self.ctx.dynamodb, self.ctx.retry_table, waiting, **settings)}
            missing = [
                i for i, task_id in zip(range(index, index + len(ids)), ids, strict=True) if task_id not in found
            ]
            if missing:
                index = missing[0]
                break
            index += len(ids)
        if self.store.update(
            job.job_id,
            {"total": index, "created": index},
            condition=Attr("state").eq(job.state.value) & Attr("total").eq(job.total),
        ):
            logger.info("Job total settled", extra={"job_id": job.job_id, "total": index, "was": job.total})
            job.total = job.created = index
        return job.total

    # ------------------------------------------------------------------ the end event

    def publish(self, job: Job, stats: Counter[str] | None = None) -> bool:
        """Publish the job's pending end event, once: lease the mark, PutEvents, clear the mark."""
        stats = stats if stats is not None else Counter()
        now = self.ctx.now()
        lease = now + NOTIFY_LEASE_SECONDS
        pending = Attr("notify_pending").eq(True)
        free = Attr("notify_lease").not_exists() | Attr("notify_lease").lt(now)
        if not self.store.update(job.job_id, {"notify_lease": lease}, condition=pending & free):
            return False  # published already, or another tracker holds the lease
        counts = JobCounts(**{k: int(v) for k, v in (job.raw.get("end_counts") or {}).items() if k != "closed"})
        try:
            events.publish(self.events_client, self.ctx.config["job_event_bus"], job, counts)
        except Exception:  # left pending (the lease lapses): published by a later run
            logger.exception("Publishing a job's end event failed", extra={"job_id": job.job_id})
            self.store.update(job.job_id, removes=["notify_lease"], condition=Attr("notify_lease").eq(lease))
            stats["events_failed"] += 1
            return False
        self.store.update(
            job.job_id,
            {"job_list": DONE, "notified_at": now},
            removes=["notify_pending", "notify_lease"],
            condition=Attr("notify_lease").eq(lease),
        )
        stats["events_published"] += 1
        logger.info("Job end published", extra={"job_id": job.job_id, "state": job.state.value})
        return True
