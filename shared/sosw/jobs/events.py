"""The event that announces a job's end, on EventBridge: source ``sosw``, detail-type ``Job Finished``,
``Job Failed`` or ``Job Cancelled``, with the counts and the duration.

Consumers can tell a repeat by ``detail.event_id`` (``<job_id>:<state>``): the publisher never sends one
twice on purpose (see ``JobTracker``), but EventBridge has no idempotency token, so a crash after
``PutEvents`` succeeded and before the job was marked published would send it again.
"""

from __future__ import annotations

import json
from typing import Any

from sosw.jobs.model import END_EVENTS, Job, JobCounts

__all__ = ["EVENT_SOURCE", "end_event", "publish"]

EVENT_SOURCE = "sosw"


def end_event(job: Job, counts: JobCounts) -> tuple[str, dict[str, Any]]:
    """The detail-type and detail of the job's end event."""
    started = job.created_at
    ended = job.ended_at or started
    detail = {
        "event_id": f"{job.job_id}:{job.state.value}",
        "job_id": job.job_id,
        "labourer_id": job.labourer_id,
        "status": job.state.value,
        "total": job.total,
        **counts.as_dict(),
        "tolerated_failure_percentage": job.tolerated_failure_percentage,
        "created_at": started,
        "failed_at": job.failed_at,
        "ended_at": ended,
        "duration_seconds": round(ended - started, 3),
    }
    return END_EVENTS[job.state], detail


def publish(events_client: Any, bus: str, job: Job, counts: JobCounts) -> None:
    """One PutEvents; raises if EventBridge did not take the entry (the caller leaves it pending)."""
    detail_type, detail = end_event(job, counts)
    response = events_client.put_events(
        Entries=[
            {
                "Source": EVENT_SOURCE,
                "DetailType": detail_type,
                "Detail": json.dumps(detail, default=str),
                "Resources": [],
                "EventBusName": bus,
            }
        ]
    )
    if response.get("FailedEntryCount"):
        entry = (response.get("Entries") or [{}])[0]
        raise RuntimeError(f"EventBridge refused the event: {entry.get('ErrorCode')}: {entry.get('ErrorMessage')}")
