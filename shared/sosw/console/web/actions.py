"""What the console does: the CLI's own package calls, each logged as one structured line.

Cancel, prioritise and redrive a task, cancel a job: the TaskManager's methods, as ``sosw cancel``,
``sosw prioritise``, ``sosw redrive`` and ``sosw job cancel`` call them. No new write path.

A redrive of everything matching a filter runs in the background in bounded, paced batches: each batch
reads at most ``page_size`` dead tasks (one page of the dead listing, newest first, closed before the
dry run, so a task that dies again meanwhile is not taken twice) and redrives them one by one; a batch
refused by DynamoDB (throttled, or any error) is tried again after a backoff, and the run stops after
``attempts`` refusals in a row, saying so. One run per filter at a time: a second click on the same
confirmation finds the run the first one started.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sosw.console.web.reads import PAGE_SIZE, TaskFilter, list_tasks
from sosw.dynamo import backoff_delays
from sosw.errors import InvalidInputError
from sosw.managers.task import TaskManager

__all__ = ["ACTION_LOG", "Actions", "DryRun", "RedriveFilter", "RedriveRun", "log_action"]

#: The action log: one JSON line per action (what, on which tasks, how many), for whoever runs the console.
ACTION_LOG = logging.getLogger("sosw.console.action")
#: At most this many task ids are written on one action line; the count is always whole.
LOGGED_IDS = 100


def log_action(action: str, *, outcome: str, count: int, task_ids: list[str] | None = None, **details: Any) -> None:
    """One structured line: the action, its outcome, how many, and which (the first ``LOGGED_IDS``)."""
    record: dict[str, Any] = {"action": action, "outcome": outcome, "count": count}
    if task_ids is not None:
        record["task_ids"] = task_ids[:LOGGED_IDS]
        if len(task_ids) > LOGGED_IDS:
            record["task_ids_omitted"] = len(task_ids) - LOGGED_IDS
    record.update({k: v for k, v in details.items() if v not in (None, "")})
    ACTION_LOG.info(json.dumps(record, sort_keys=True, default=str))


@dataclass(frozen=True)
class RedriveFilter:
    """Which dead tasks a "redrive everything matching" takes: the dead page's filter, fixed at the dry run."""

    labourer: str
    error: str = ""
    since: float | None = None
    until: float | None = None

    def key(self) -> str:
        return json.dumps([self.labourer, self.error, self.since, self.until])

    def task_filter(self, before: float) -> TaskFilter:
        """The dead (or, for the error ``Cancelled``, cancelled) tasks of the filter closed before ``before``."""
        until = before if self.until is None else min(self.until, before)
        state = "cancelled" if self.error == "Cancelled" else "dead"
        return TaskFilter(state=state, labourer=self.labourer, error=self.error, since=self.since, until=until)


@dataclass(frozen=True)
class DryRun:
    """What a dry run counted, when, and the confirmation that starts the redrive of exactly that."""

    filter: RedriveFilter
    matched: int
    read: int
    complete: bool
    at: float
    confirmation: str


@dataclass
class RedriveRun:
    run_id: str
    filter: RedriveFilter
    expected: int
    started_at: float
    redriven: int = 0
    skipped: int = 0
    batches: int = 0
    retries: int = 0
    done: bool = False
    error: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "redriven": self.redriven,
            "skipped": self.skipped,
            "expected": self.expected,
            "batches": self.batches,
            "retries": self.retries,
            "done": self.done,
            "error": self.error,
        }


class Actions:
    """The console's actions on one TaskManager."""

    def __init__(
        self,
        tm: TaskManager,
        *,
        page_size: int = PAGE_SIZE,
        pause_seconds: float = 0.2,
        attempts: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.tm = tm
        self.page_size = page_size
        self.pause_seconds = pause_seconds
        self.attempts = attempts
        self._sleep = sleep
        self._runs: dict[str, RedriveRun] = {}
        self._dry_runs: dict[str, DryRun] = {}
        self._by_confirmation: dict[str, str] = {}
        self._by_filter: dict[str, str] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ one task, one job

    def cancel(self, task_id: str) -> bool:
        done = self.tm.cancel_task(task_id)
        log_action("cancel", outcome="done" if done else "refused: not queued", count=int(done), task_ids=[task_id])
        return done

    def prioritise(self, task_id: str) -> bool:
        done = self.tm.prioritise_task(task_id)
        outcome = "done" if done else "refused: not queued"
        log_action("prioritise", outcome=outcome, count=int(done), task_ids=[task_id])
        return done

    def redrive(self, task_ids: list[str]) -> tuple[int, list[str]]:
        """Redrive these dead tasks (one, or a selection); returns how many moved and the ids that did not."""
        moved, refused = 0, []
        for task_id in task_ids:
            task = self.tm.get_closed_task_by_id(task_id)
            ok = False
            if task and task.get(self.tm.get_db_field_name("labourer_id_task_status"), "").endswith("_0"):
                ok = self.tm.redrive_task(task)
            moved += ok
            if not ok:
                refused.append(task_id)
        outcome = "done" if not refused else f"{len(refused)} not dead (any more)"
        log_action("redrive", outcome=outcome, count=moved, task_ids=task_ids, refused=refused or None)
        return moved, refused

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        before = self.tm.get_job(job_id)
        if before["state"] not in ("creating", "running", "failing", "cancelling"):
            log_action("cancel_job", outcome=f"refused: job has ended ({before['state']})", count=0, job_id=job_id)
            raise InvalidInputError("job_id", f"job {job_id!r} has ended ({before['state']}): nothing to cancel")
        job = self.tm.cancel_job(job_id)
        cancelled = int(job["cancelled"]) - int(before["cancelled"])
        log_action("cancel_job", outcome="done", count=cancelled, job_id=job_id, state=job["state"])
        return job

    # ------------------------------------------------------------------ everything matching a filter

    def dry_run(self, flt: RedriveFilter, max_read: int, now: float) -> DryRun:
        """How many dead tasks the filter takes (closed before ``now``), reading at most about ``max_read``,
        and the confirmation that may start their redrive: kept here, so only a dry run can start one."""
        matched = read = 0
        cursor: str | None = None
        while True:
            page = list_tasks(self.tm, flt.task_filter(before=now), cursor, self.page_size)
            matched += len(page.tasks)
            read += page.read
            cursor = page.cursor
            if cursor is None or read >= max_read:
                break
        dry = DryRun(flt, matched, read, cursor is None, now, uuid.uuid4().hex)
        with self._lock:
            self._dry_runs[dry.confirmation] = dry
        log_action("redrive_filter_dry_run", outcome="counted", count=matched, read=read, **_fields(flt))
        return dry

    def start_redrive(self, confirmation: str) -> RedriveRun:
        """Start the redrive of the dry run this confirmation was given for. The same confirmation again (a
        second click, a resent form), or another while a run of the same filter goes on, gets the run already
        started. A confirmation no dry run of this console gave is refused."""
        with self._lock:
            dry = self._dry_runs.get(confirmation)
            if dry is None:
                raise InvalidInputError("confirmation", "no dry run of this console gave it: run the dry run first")
            flt = dry.filter
            run_id = self._by_confirmation.get(confirmation)
            if run_id is None:
                current = self._by_filter.get(flt.key())
                if current is not None and not self._runs[current].done:
                    run_id = self._by_confirmation[confirmation] = current
            if run_id is not None:
                run = self._runs[run_id]
                log_action("redrive_filter", outcome="already started", count=0, run_id=run_id, **_fields(flt))
                return run
            run = RedriveRun(uuid.uuid4().hex[:12], flt, dry.matched, time.time())
            self._runs[run.run_id] = run
            self._by_confirmation[confirmation] = run.run_id
            self._by_filter[flt.key()] = run.run_id
        log_action("redrive_filter", outcome="started", count=dry.matched, run_id=run.run_id, **_fields(flt))
        threading.Thread(target=self._redrive_all, args=(run, dry.at), daemon=True, name="redrive").start()
        return run

    def run(self, run_id: str) -> RedriveRun | None:
        return self._runs.get(run_id)

    def _redrive_all(self, run: RedriveRun, before: float) -> None:
        """One pass over the filter's dead tasks, newest first, a page (``page_size`` read) a batch.

        Redriven tasks leave the index; the cursor goes on from the last key read, so every task closed
        before the dry run is met once, and one that dies again meanwhile (closed after it) is not.
        """
        failures = 0
        delays = backoff_delays(self.attempts, 0.2, 5.0)
        cursor: str | None = None
        while True:
            try:
                page = list_tasks(self.tm, run.filter.task_filter(before=before), cursor, self.page_size)
                moved = 0
                for task in page.tasks:
                    moved += self.tm.redrive_task(task)
            except Exception as exc:  # throttled past botocore's retries, a network error: the same page again
                failures += 1
                run.retries += 1
                if failures >= self.attempts:
                    run.error = f"{type(exc).__name__}: {exc}"
                    break
                self._sleep(next(delays, 5.0))
                continue
            failures = 0
            with run.lock:
                run.batches += 1
                run.redriven += moved
                run.skipped += len(page.tasks) - moved
            cursor = page.cursor
            if cursor is None:
                break
            self._sleep(self.pause_seconds)
        run.done = True
        log_action(
            "redrive_filter",
            outcome="failed: " + run.error if run.error else "done",
            count=run.redriven,
            run_id=run.run_id,
            batches=run.batches,
            **_fields(run.filter),
        )


def _fields(flt: RedriveFilter) -> Mapping[str, Any]:
    return {"labourer": flt.labourer, "error": flt.error, "since": flt.since, "until": flt.until}
