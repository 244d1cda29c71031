"""Jobs end to end on the local stack: the Scheduler Lambda makes the tasks (from an uploaded job file and
from sosw's job event), the real workers run them, the Scavenger follows the jobs, and their end events
come out of EventBridge (moto's, read back through a rule to a queue).

Two jobs of 500 tasks at once, on two labourers; in each, 50 tasks always fail and come first in the queue,
so a tolerance below their share is crossed while work remains.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from sosw.local.stack import WorkerSpec
from tests.conftest import scan_all
from tests.e2e.test_lifecycle_e2e import fast, stack_factory  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration

TASKS, FAILING = 500, 50
SCHEMA = {"chunkable_attrs": [["section", {}]]}


def sosw_job(labourer: str) -> dict:
    """A sosw Scheduler job: one task per section; the first 50 sections always fail."""
    sections = {f"s{i:03d}": ({"always_fail": True} if i < FAILING else None) for i in range(TASKS)}
    return {"lambda_name": labourer, "isolate_sections": True, "sections": sections}


def test_two_jobs_of_500_tasks_one_finishes_and_one_fails_each_announced_once(stack_factory):  # noqa: F811
    # Given two labourers whose failing tasks are closed as dead at once (no retry)
    settings = fast(max_simultaneous_invocations=20, never_retry_errors=["RuntimeError"])
    # brittle runs two at a time: dispatch follows the work within a second, so a wide labourer would finish
    # the whole job before a Scavenger run could see its tolerance crossed
    narrow = {**settings, "max_simultaneous_invocations": 2}
    stack = stack_factory(
        [WorkerSpec("steady", settings, concurrency=20), WorkerSpec("brittle", narrow, concurrency=4)],
        config={"job_schema": SCHEMA},
    )
    tm = stack.task_manager()
    started = time.monotonic()
    # When a job file is uploaded, tolerating 20% dead (above its 10%) ...
    stack.upload_job("nightly/steady.json", json.dumps({"job": sosw_job("steady"), "tolerated_failure_percentage": 20}))
    # ... and a job event is sent to the Scheduler, tolerating 5% (below)
    stack.submit_job({"job": sosw_job("brittle"), "job_id": "brittle-1", "tolerated_failure_percentage": 5})
    # (the tasks are made, and dispatched as they are: wait for both totals, not for the endpoint to be idle)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        listed = tm.list_jobs()
        if len(listed) == 2 and all(tm.get_job(j["job_id"])["total"] == TASKS for j in listed):
            break
        time.sleep(0.2)
    jobs = {j["labourer_id"]: j["job_id"] for j in tm.list_jobs()}
    assert set(jobs) == {"steady", "brittle"} and jobs["brittle"] == "brittle-1"
    assert all(tm.get_job(j)["total"] == TASKS for j in jobs.values())

    # And the schedules run until both jobs have announced their end
    seen: set[str] = set()
    progress = []
    for _ in range(400):
        stack.run_orchestrator(follow=False)
        stack.run_scavenger()
        progress.append({lab: tm.get_job(j)["closed"] for lab, j in jobs.items()})
        seen = {e["detail"]["job_id"] for e in stack.job_events()}
        if seen == set(jobs.values()):
            break
        time.sleep(0.05)
    assert seen == set(jobs.values()), f"no end event after {progress[-1]}"
    stack.lambda_.wait_idle(10)
    elapsed = time.monotonic() - started

    # Then each job has exactly one end event, with its counts
    events = stack.job_events()
    by_job = {j: [e for e in events if e["detail"]["job_id"] == j] for j in jobs.values()}
    (finished,) = by_job[jobs["steady"]]
    (failed,) = by_job[jobs["brittle"]]
    assert finished["detail-type"] == "Job Finished" and finished["source"] == "sosw"
    d = finished["detail"]
    assert (d["completed"], d["dead"], d["cancelled"], d["total"]) == (TASKS - FAILING, FAILING, 0, TASKS)
    assert failed["detail-type"] == "Job Failed"
    f = failed["detail"]
    assert f["cancelled"] >= 1 and f["dead"] > TASKS * 5 / 100
    assert f["completed"] + f["dead"] + f["cancelled"] == f["total"] == TASKS

    # And nothing of either job is left running or waiting; the counts are the rows in the tables
    tables = scan_all(stack.config)
    assert tables["tasks"] == [] and tables["retry"] == []
    for labourer, job_id in jobs.items():
        rows = [t for t in tables["closed"] if t.get("job_id") == job_id]
        outcomes = Counter(
            "completed"
            if t["labourer_id_task_status"].endswith("_1")
            else ("cancelled" if t.get("last_error", {}).get("type") == "Cancelled" else "dead")
            for t in rows
        )
        job = tm.get_job(job_id)
        assert len(rows) == job["total"] == TASKS, labourer
        assert (job["completed"], job["dead"], job["cancelled"]) == (
            outcomes["completed"],
            outcomes["dead"],
            outcomes["cancelled"],
        ), labourer
        assert job["state"] == ("finished" if labourer == "steady" else "failed")
        assert not job["end_event_pending"]
    # And no cancelled task completed (a delivery refused as late, then a retry waiting, may be cancelled)
    assert not [
        t for t in tables["closed"] if t.get("last_error", {}).get("type") == "Cancelled" and "completed_at" in t
    ]
    print(f"\n2 jobs of {TASKS} tasks in {elapsed:.1f} s: finished {d}, failed {f}")
