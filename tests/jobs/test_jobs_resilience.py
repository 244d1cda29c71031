"""Jobs against crashes and DynamoDB faults, on DynamoDB Local: a creation killed in the middle resumes
with no task lost or created twice, and closes under injected conflicts and throttling count exactly."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections import Counter
from typing import Any

import pytest

from sosw.managers.task import WORKER_EVENT_FIELDS, TaskManager
from tests.jobs.test_jobs import RecordingEvents
from tests.reliability.harness import DynamoFaults, scaled, scan

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("backend", ["local"], indirect=True)]


def _create_then_die(config: dict[str, Any], env: dict[str, str], total: int, kill_at: int) -> None:
    """A Scheduler run: creates the job, and is killed (SIGKILL) at its ``kill_at``-th transaction."""
    os.environ.update(env)
    from sosw.jobs import submit

    submit.CREATE_BATCH = 50  # the cursor moves every 50 tasks
    tm = TaskManager(config)
    calls = [0]

    def maybe_die(**_: Any) -> None:
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    tm.dynamo_db_client.meta.events.register("before-send.dynamodb.TransactWriteItems", maybe_die)
    tm.create_job("alpha", [{"n": i} for i in range(total)], job_id="killed")


def test_a_creation_killed_in_the_middle_resumes_with_no_task_lost_or_created_twice(config):
    total = scaled(400, 4000)
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    # Given a creation killed -9 at its 7th transaction (some batches written, the cursor behind them)
    process = multiprocessing.get_context("spawn").Process(target=_create_then_die, args=(config, env, total, 7))
    process.start()
    process.join(120)
    assert process.exitcode == -signal.SIGKILL
    tm = TaskManager(config)
    job = tm.get_job("killed")
    tables = scan(config)
    written = {t["task_id"] for t in tables["tasks"]}
    assert job["state"] == "creating" and 0 < job["created"] <= len(written) < total
    # And meanwhile one task of it runs and another has already closed
    alpha = tm.register_labourers()[0]
    running = tm.mark_task_invoked(alpha, tm.get_task_by_id("killed.0"))
    done = tm.mark_task_invoked(alpha, tm.get_task_by_id("killed.1"))
    event = tm.worker_event(done)
    copy = {k: event[k] for k in WORKER_EVENT_FIELDS if k in event} | {"payload": done["payload"]}
    assert tm.complete_and_archive_task(copy, attempt=1)
    # When the same job is submitted again (what Lambda's retry of the Scheduler's event does)
    resumed = tm.create_job("alpha", [{"n": i} for i in range(total)], job_id="killed")
    # Then every task exists exactly once, with its own payload; the running and closed ones as they were
    assert resumed["complete"] and resumed["state"] == "running" and resumed["total"] == total
    tables = scan(config)
    where = Counter(t["task_id"] for role in ("tasks", "retry", "closed") for t in tables[role])
    assert sorted(where) == sorted(f"killed.{i}" for i in range(total)) and set(where.values()) == {1}
    rows = {t["task_id"]: t for role in ("tasks", "closed") for t in tables[role]}
    assert all(rows[f"killed.{i}"]["payload"] == f'{{"n": {i}}}' for i in range(total))
    assert rows["killed.0"]["greenfield"] == running["greenfield"] and rows["killed.0"]["attempts"] == 1
    assert "closed_at" in rows["killed.1"] and tm.get_job("killed")["completed"] == 1


def test_closes_under_injected_conflicts_and_throttling_keep_the_counts_exact(config):
    total = scaled(240, 2000)
    tm = TaskManager(config)
    tm.create_job("alpha", [{"n": i} for i in range(total)], job_id="faulty", tolerated_failure_percentage=100)
    alpha = tm.register_labourers()[0]
    claimed = [tm.mark_task_invoked(alpha, tm.get_task_by_id(f"faulty.{i}")) for i in range(total)]
    faults = DynamoFaults(rate=0.25, seed=7)

    def close(share: list[dict[str, Any]]) -> None:
        # One closer (a WorkerAssistant, a Scavenger) per thread, on a client that meets the faults
        closer = TaskManager(config)
        faults.install(closer.dynamo_db_client)
        closer.register_labourers()
        for task in share:
            if int(task["task_id"].split(".")[1]) % 5 == 0:  # every fifth dies
                assert closer.archive_task({**task, "last_error": {"type": "Boom"}}, completed=False)
            else:
                event = closer.worker_event(task)
                copy = {k: event[k] for k in WORKER_EVENT_FIELDS if k in event} | {"payload": task["payload"]}
                assert closer.complete_and_archive_task(copy, attempt=task["attempts"])

    threads = [threading.Thread(target=close, args=(claimed[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    # Then the faults did happen, inside botocore's retries and our transaction retries
    assert faults.injected["TransactionConflict"] > 0
    assert faults.injected["ThrottlingException"] + faults.injected["ProvisionedThroughputExceededException"] > 0
    # And the job's counts are exactly the closed rows, by outcome
    rows = [t for t in scan(config)["closed"] if t.get("job_id") == "faulty"]
    expected = Counter("completed" if t["labourer_id_task_status"].endswith("_1") else "dead" for t in rows)
    job = tm.get_job("faulty")
    assert len(rows) == total and (job["completed"], job["dead"], job["closed"]) == (
        expected["completed"],
        expected["dead"],
        total,
    )
    events = RecordingEvents()
    tm.jobs.tracker.events_client = events
    tm.track_jobs()
    assert [k for k, _ in events.details()] == ["Job Finished"]
    print(f"\njob closes under faults: tasks={total} injected={dict(faults.injected)} counts={job}")
