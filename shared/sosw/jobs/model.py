"""The words of jobs: their states, ids, counts and the answer ``get_job`` gives.

A job is one business job ("process these 40,000 files") made of many tasks of one labourer. Its tasks
have ids derived from the job and their place in it (``<job_id>.<index>``), so creating them again after a
crash finds the same ids and overwrites nothing; each carries ``job_id`` and ``job_shard`` (the counter
item its close updates).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sosw.errors import InvalidInputError

__all__ = [
    "ACTIVE_STATES",
    "END_EVENTS",
    "JOB_FIELDS",
    "Job",
    "JobCounts",
    "JobState",
    "check_job_id",
    "check_tolerance",
    "counter_key",
    "task_id_for",
]

#: Fields every task of a job carries (stored on the task, sent to its worker, kept on its closed row).
JOB_FIELDS = ("job_id", "job_shard")

_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")


class JobState(StrEnum):
    CREATING = "creating"  # its tasks are being created (they may already run)
    RUNNING = "running"  # every task exists; waiting for them all to close
    FAILING = "failing"  # too many dead: queued and waiting tasks are being cancelled, running ones finish
    CANCELLING = "cancelling"  # cancelled by a user: the same, until every task is closed
    FINISHED = "finished"  # every task closed, dead ones within the tolerance
    FAILED = "failed"  # every task closed after the job failed
    CANCELLED = "cancelled"  # every task closed after the job was cancelled


ACTIVE_STATES = (JobState.CREATING, JobState.RUNNING, JobState.FAILING, JobState.CANCELLING)
#: The end state each active state leads to once every task is closed, and the event announcing it.
END_STATES = {
    JobState.CREATING: JobState.FINISHED,
    JobState.RUNNING: JobState.FINISHED,
    JobState.FAILING: JobState.FAILED,
    JobState.CANCELLING: JobState.CANCELLED,
}
END_EVENTS = {JobState.FINISHED: "Job Finished", JobState.FAILED: "Job Failed", JobState.CANCELLED: "Job Cancelled"}


def check_job_id(job_id: Any) -> str:
    """Letters, digits and ``_.:-``, at most 128: ids of its tasks and counters are built from it."""
    if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
        raise InvalidInputError(
            "job_id", f"expected 1-128 letters, digits or '_.:-' (starting with a letter or digit), got {job_id!r}"
        )
    return job_id


def check_tolerance(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
        raise InvalidInputError(
            "tolerated_failure_percentage", f"expected a number from 0 to 100, got {value!r}", limit="0-100"
        )
    return value


def task_id_for(job_id: str, index: int) -> str:
    """The id of the job's task at ``index`` (its place in the job's chunking order)."""
    return f"{job_id}.{index}"


def counter_key(job_id: str, shard: int) -> str:
    """The key of one of the job's counter items (``#`` is never in a job id, so no header can collide)."""
    return f"{job_id}#{shard}"


@dataclass(frozen=True)
class JobCounts:
    """Exact counts of the job's closed tasks, summed over its counter items."""

    completed: int = 0
    dead: int = 0
    cancelled: int = 0

    @property
    def closed(self) -> int:
        return self.completed + self.dead + self.cancelled

    def as_dict(self) -> dict[str, int]:
        return {"completed": self.completed, "dead": self.dead, "cancelled": self.cancelled, "closed": self.closed}


@dataclass
class Job:
    """A job as read: its header item (and, from ``get_job``, its counts)."""

    job_id: str
    labourer_id: str
    state: JobState
    total: int
    created: int
    tolerated_failure_percentage: float
    shards: int
    created_at: float
    fingerprint: str
    source: str
    today: str | None = None
    running_at: float | None = None
    failed_at: float | None = None
    ended_at: float | None = None
    notify_pending: bool = False
    counts: JobCounts = field(default_factory=JobCounts)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Job:
        return cls(
            job_id=item["job_id"],
            labourer_id=item["labourer_id"],
            state=JobState(item["state"]),
            total=int(item["total"]),
            created=int(item.get("created", 0)),
            tolerated_failure_percentage=item.get("tolerated_failure_percentage", 0),
            shards=int(item["shards"]),
            created_at=item["created_at"],
            fingerprint=item["fingerprint"],
            source=item.get("source", "payloads"),
            today=item.get("today"),
            running_at=item.get("running_at"),
            failed_at=item.get("failed_at"),
            ended_at=item.get("ended_at"),
            notify_pending=bool(item.get("notify_pending")),
            raw=item,
        )

    @property
    def ended(self) -> bool:
        return self.state not in ACTIVE_STATES

    def fails_with(self, counts: JobCounts) -> bool:
        """Dead tasks strictly more than the tolerated percentage of the total (exact, no float rounding)."""
        from fractions import Fraction

        return Fraction(counts.dead * 100) > Fraction(str(self.tolerated_failure_percentage)) * self.total

    def as_dict(self) -> dict[str, Any]:
        """What ``get_job`` returns: the counts of closed tasks are exact; ``open`` is ``total - closed``."""
        counts = self.counts
        return {
            "job_id": self.job_id,
            "labourer_id": self.labourer_id,
            "state": self.state.value,
            "total": self.total,
            "created": self.created,
            **counts.as_dict(),
            "open": max(0, self.total - counts.closed),
            "progress": counts.closed / self.total if self.total else 1.0,
            "tolerated_failure_percentage": self.tolerated_failure_percentage,
            "source": self.source,
            "created_at": self.created_at,
            "running_at": self.running_at,
            "failed_at": self.failed_at,
            "ended_at": self.ended_at,
            "end_event_pending": self.notify_pending,
        }
