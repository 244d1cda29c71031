"""Jobs through the TaskManager: created as tasks, counted by their close transactions, ended once.

Each test runs on moto and on DynamoDB Local (``backend``), with fresh tables.
"""

from __future__ import annotations

import datetime
import json
from collections import Counter
from typing import Any

import pytest

from sosw.errors import InvalidInputError
from sosw.jobs.chunking import iter_task_payloads
from sosw.labourer import Labourer
from sosw.managers.task import WORKER_EVENT_FIELDS, TaskManager
from sosw.tasks.model import CANCELLED_ERROR
from tests.conftest import scan_all
from tests.taskmanager.test_lifecycle import CountingHook

SCHEMA = {"chunkable_attrs": [["section", {}], ["store", {}]]}


class RecordingEvents:
    """An EventBridge client that keeps what it is given (and can fail, or crash, on purpose)."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.fail_next: BaseException | None = None

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error
        self.entries.extend(Entries)
        return {"FailedEntryCount": 0, "Entries": [{"EventId": str(len(self.entries))}]}

    def details(self) -> list[tuple[str, dict[str, Any]]]:
        return [(e["DetailType"], json.loads(e["Detail"])) for e in self.entries]


class Crash(BaseException):
    """Stands for the process dying: nothing in the code under test catches it."""


@pytest.fixture
def events(manager: TaskManager) -> RecordingEvents:
    recorder = RecordingEvents()
    manager.jobs.tracker.events_client = recorder
    return recorder


def alpha(manager: TaskManager) -> Labourer:
    return manager.register_labourers()[0]


def run_and_close(manager: TaskManager, task_id: str, outcome: str = "completed") -> bool:
    """Claim the task and close it as its worker (completed) or the Scavenger (dead) would."""
    labourer = manager.get_labourer(manager.get_task_by_id(task_id)["labourer_id"])
    claimed = manager.mark_task_invoked(labourer, manager.get_task_by_id(task_id))
    if outcome == "completed":
        event = manager.worker_event(claimed)
        copy = {k: event[k] for k in WORKER_EVENT_FIELDS if k in event}
        copy["payload"] = claimed["payload"]
        return bool(manager.complete_and_archive_task(copy, attempt=claimed["attempts"]))
    return manager.archive_task({**claimed, "last_error": {"type": "Boom", "message": "x"}}, completed=False)


# ---------------------------------------------------------------- creation


def test_a_job_becomes_tasks_with_derived_ids_that_carry_the_job(manager, config):
    # Given a job of 5 payloads
    job = manager.create_job(alpha(manager), [{"n": i} for i in range(5)], job_id="nightly")
    # Then it is running with a total of 5 and nothing closed
    assert job["state"] == "running" and job["total"] == 5 and job["closed"] == 0 and job["complete"]
    tasks = {t["task_id"]: t for t in scan_all(config)["tasks"]}
    # And each task's id comes from the job and its index, and carries the job and its counter shard
    assert sorted(tasks) == [f"nightly.{i}" for i in range(5)]
    assert {json.loads(t["payload"])["n"] for t in tasks.values()} == set(range(5))
    assert all(t["job_id"] == "nightly" and t["job_shard"] == int(k.split(".")[1]) % 64 for k, t in tasks.items())
    # And the queue order is the job's order
    queued = manager.get_next_for_labourer(alpha(manager), cnt=5, only_ids=True)
    assert queued == [f"nightly.{i}" for i in range(5)]


def test_create_job_is_idempotent_on_its_id(manager, config):
    first = manager.create_job("alpha", [{"n": i} for i in range(3)], job_id="j1")
    again = manager.create_job("alpha", [{"n": i} for i in range(3)], job_id="j1")
    assert again["created_now"] == 0 and again["total"] == first["total"] == 3
    assert len(scan_all(config)["tasks"]) == 3


def test_a_sosw_job_is_chunked_as_sosw_does_and_keeps_its_date(manager, config):
    job = {"lambda_name": "alpha", "sections": ["a", "b"], "isolate_sections": True, "period": "last_2_days"}
    day = datetime.date(2024, 5, 15)
    created = manager.create_job(None, job, job_id="weekly", job_schema=SCHEMA, today=day)
    expected = sorted(json.dumps(p, sort_keys=True) for p in iter_task_payloads(job, SCHEMA, day))
    stored = sorted(json.dumps(json.loads(t["payload"]), sort_keys=True) for t in scan_all(config)["tasks"])
    assert created["total"] == 2 and stored == expected
    # Submitted again another day with the same id: the same job (its date is the first one)
    again = manager.create_job(None, job, job_id="weekly", job_schema=SCHEMA, today=datetime.date(2030, 1, 1))
    assert again["created_now"] == 0 and len(scan_all(config)["tasks"]) == 2


def test_a_run_stopped_for_time_resumes_where_it_stopped(manager, config, monkeypatch):
    from sosw.jobs import submit

    monkeypatch.setattr(submit, "CREATE_BATCH", 4)
    # Given a creation that runs out of time after its first batch
    first = manager.create_job("alpha", [{"n": i} for i in range(10)], job_id="big", remaining=lambda: 0.0)
    assert not first["complete"] and first["state"] == "creating" and first["created"] == 4
    assert len(scan_all(config)["tasks"]) == 4
    # And a task of it already claimed meanwhile
    claimed = manager.mark_task_invoked(alpha(manager), manager.get_task_by_id("big.0"))
    # When the same job is submitted again
    done = manager.create_job("alpha", [{"n": i} for i in range(10)], job_id="big")
    # Then it goes on from its cursor, creates the rest once, and leaves the claimed task as it is
    assert done["complete"] and done["state"] == "running" and done["created_now"] == 6
    tasks = {t["task_id"]: t for t in scan_all(config)["tasks"]}
    assert sorted(tasks, key=lambda i: int(i.split(".")[1])) == [f"big.{i}" for i in range(10)]
    assert tasks["big.0"]["greenfield"] == claimed["greenfield"] and tasks["big.0"]["attempts"] == 1


# ---------------------------------------------------------------- bad input writes nothing


@pytest.mark.parametrize(
    ("args", "kwargs", "field"),
    [
        (("nobody", [{"n": 1}]), {}, "labourer_id"),
        (("alpha", []), {}, "payloads"),
        (("alpha", [{"n": 1}]), {"tolerated_failure_percentage": 101}, "tolerated_failure_percentage"),
        (("alpha", [{"n": 1}]), {"tolerated_failure_percentage": -1}, "tolerated_failure_percentage"),
        (("alpha", [{"n": 1}]), {"tolerated_failure_percentage": True}, "tolerated_failure_percentage"),
        (("alpha", [{"n": 1}, "not a dict"]), {}, "payloads[1]"),
        (("alpha", [{"n": 1}, {"big": "x" * 400_000}]), {}, "payloads[1]"),
        (("alpha", [{"n": 1}]), {"job_id": "has space"}, "job_id"),
        (
            (None, {"lambda_name": "nobody", "sections": ["a"], "isolate_sections": True}),
            {"job_schema": SCHEMA},
            "lambda_name",
        ),
        (
            (None, {"lambda_name": "alpha", "sections": ["a"], "isolate_sections": True, "period": "fortnight"}),
            {"job_schema": SCHEMA},
            "period",
        ),
        ((None, {"lambda_name": "alpha", "sections": 5, "isolate_sections": True}), {"job_schema": SCHEMA}, "sections"),
        ((None, {"lambda_name": "alpha", "isolate_sections": True}), {"job_schema": SCHEMA}, "job"),
        ((None, {"lambda_name": "alpha", "sections": ["a"]}), {}, "job_schema"),
    ],
    ids=[
        "unknown_labourer",
        "empty_job",
        "tolerance_over_100",
        "tolerance_negative",
        "tolerance_bool",
        "payload_not_a_dict",
        "payload_over_the_item_limit",
        "bad_job_id",
        "sosw_unknown_labourer",
        "unknown_period_word",
        "chunkable_attr_not_a_list_or_dict",
        "sosw_job_making_no_task",
        "sosw_job_without_schema",
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(manager, config, args, kwargs, field):
    with pytest.raises(InvalidInputError) as caught:
        manager.create_job(*args, **kwargs)
    assert caught.value.field == field
    assert all(not items for items in scan_all(config).values())


def test_a_job_id_reused_with_other_content_is_refused_and_writes_nothing(manager, config):
    manager.create_job("alpha", [{"n": 1}], job_id="same")
    before = scan_all(config)
    for other in (([{"n": 2}], {}), ([{"n": 1}], {"tolerated_failure_percentage": 5})):
        with pytest.raises(InvalidInputError) as caught:
            manager.create_job("alpha", other[0], job_id="same", **other[1])
        assert caught.value.field == "job_id"
    assert scan_all(config) == before


# ---------------------------------------------------------------- counting closes


def test_closes_are_counted_exactly_in_their_own_transaction(manager, config):
    manager.create_job("alpha", [{"n": i} for i in range(6)], job_id="c")
    hook = CountingHook(manager.dynamo_db_client)
    # A completion by the worker's copy: still one request, with one more item
    assert run_and_close(manager, "c.0")
    completion_calls = dict(hook.calls)
    # 2 reads and the claim (a transaction with the slot counter) are the test's; the completion is 1 transaction
    assert completion_calls == {"GetItem": 2, "TransactWriteItems": 2}
    assert run_and_close(manager, "c.1", "dead")
    assert manager.cancel_task("c.2")
    job = manager.get_job("c")
    assert (job["completed"], job["dead"], job["cancelled"], job["closed"], job["open"]) == (1, 1, 1, 3, 3)
    # The counters are separate items (shards), not the job's header
    counters = [i for i in scan_all(config)["jobs"] if "#" in i["job_id"]]
    assert sorted(i["job_id"] for i in counters) == ["c#0", "c#1", "c#2"]


def test_a_completion_adds_no_request_and_one_item_to_the_close(manager):
    # Given one job task and one plain task, both invoked
    manager.create_job("alpha", [{"n": 0}], job_id="r")
    plain = manager.create_task(alpha(manager), payload={"n": 1})
    sent: list[int] = []
    manager.dynamo_db_client.meta.events.register(
        "provide-client-params.dynamodb.TransactWriteItems",
        lambda params, **_: sent.append(len(params["TransactItems"])),
    )
    assert run_and_close(manager, plain["task_id"]) and run_and_close(manager, "r.0")
    # Then each close is one TransactWriteItems; the job's has one more item (its counter update). Each claim
    # is a transaction too (the task and its slot counter), and each close frees the slot: 3 items, 4 with a job
    claims, closes = sent[0::2], sent[1::2]
    assert claims == [2, 2] and closes == [3, 4]


def test_a_worker_copy_without_the_job_falls_back_and_is_still_counted(manager):
    manager.create_job("alpha", [{"n": 0}], job_id="old")
    claimed = manager.mark_task_invoked(alpha(manager), manager.get_task_by_id("old.0"))
    # A worker of an older release sends its copy without job_id/job_shard
    copy = {k: claimed[k] for k in ("task_id", "labourer_id", "created_at", "greenfield", "attempts", "payload")}
    assert manager.complete_and_archive_task(copy, attempt=1)  # accepted: reported on the stored task
    assert manager.get_job("old")["closed"] == 0
    (task,) = manager.get_completed_tasks_for_labourer(alpha(manager))
    assert manager.archive_task(task, completed=True)  # the Scavenger closes it from the stored row
    assert manager.get_job("old")["completed"] == 1


def test_a_redriven_dead_task_is_no_longer_counted_dead(manager):
    manager.create_job("alpha", [{"n": 0}, {"n": 1}], job_id="rd")
    assert run_and_close(manager, "rd.0", "dead")
    assert manager.get_job("rd")["dead"] == 1
    (dead,) = manager.get_dead_tasks(alpha(manager))
    assert manager.redrive_task(dead)
    assert manager.get_job("rd")["dead"] == 0


# ---------------------------------------------------------------- the end, once


def test_the_end_is_announced_once_with_counts_and_duration(manager, clock, events):
    manager.create_job("alpha", [{"n": i} for i in range(4)], job_id="e", tolerated_failure_percentage=25)
    for i in range(3):
        run_and_close(manager, f"e.{i}")
    assert manager.track_jobs()["events_published"] == 0  # one task still open
    clock.advance(30)
    run_and_close(manager, "e.3", "dead")  # 1 dead of 4 = 25%: not more than tolerated
    assert manager.track_jobs()["events_published"] == 1
    assert manager.track_jobs()["events_published"] == 0  # and never again
    ((kind, detail),) = events.details()
    assert kind == "Job Finished" and events.entries[0]["Source"] == "sosw"
    assert (detail["completed"], detail["dead"], detail["cancelled"], detail["total"]) == (3, 1, 0, 4)
    assert detail["duration_seconds"] == 30 and detail["event_id"] == "e:finished"
    job = manager.get_job("e")
    assert job["state"] == "finished" and not job["end_event_pending"]
    assert manager.list_jobs(ended=True)[0]["job_id"] == "e"


def test_a_crash_before_publishing_loses_nothing_and_duplicates_nothing(manager, clock, events):
    manager.create_job("alpha", [{"n": 0}], job_id="k")
    run_and_close(manager, "k.0")
    # The tracker dies after ending the job, inside PutEvents (before EventBridge took the event)
    events.fail_next = Crash()
    with pytest.raises(Crash):
        manager.track_jobs()
    assert manager.get_job("k")["end_event_pending"] and events.entries == []
    # A second tracker at once finds the lease held: it does not publish
    assert manager.track_jobs()["events_published"] == 0
    # Once the lease lapses, the next run publishes it, once
    clock.advance(61)
    assert manager.track_jobs()["events_published"] == 1
    assert manager.track_jobs()["events_published"] == 0
    assert [kind for kind, _ in events.details()] == ["Job Finished"]


def test_an_eventbridge_error_leaves_the_event_pending_for_the_next_run(manager, events):
    manager.create_job("alpha", [{"n": 0}], job_id="eb")
    run_and_close(manager, "eb.0")
    events.fail_next = RuntimeError("EventBridge is down")
    assert manager.track_jobs()["events_failed"] == 1
    assert manager.track_jobs()["events_published"] == 1
    assert len(events.entries) == 1


# ---------------------------------------------------------------- failure past the tolerance, and cancel


def test_past_the_tolerance_the_job_fails_cancels_what_waits_and_lets_running_tasks_finish(manager, events):
    lab = alpha(manager)
    manager.create_job(lab, [{"n": i} for i in range(10)], job_id="f", tolerated_failure_percentage=10)
    run_and_close(manager, "f.0", "dead")
    manager.track_jobs()
    assert manager.get_job("f")["state"] == "running"  # 1 of 10 = 10%: tolerated
    # One running, one waiting for retry, then a second dead task: 20% > 10%
    running = manager.mark_task_invoked(lab, manager.get_task_by_id("f.1"))
    waiting = manager.mark_task_invoked(lab, manager.get_task_by_id("f.2"))
    assert manager.move_task_to_retry_table(waiting, 600)
    run_and_close(manager, "f.3", "dead")
    stats = manager.track_jobs()
    job = manager.get_job("f")
    assert stats["jobs_failed"] == 1 and job["state"] == "failing"
    # Then every queued and waiting task is cancelled, the running one is not
    assert (job["dead"], job["cancelled"], job["open"]) == (2, 7, 1)
    assert manager.find_task("f.2")[1]["last_error"]["type"] == CANCELLED_ERROR
    assert manager.find_task("f.1")[0] == "open"
    assert events.entries == []
    # When the running task finishes, the job has failed, announced once with its counts
    event = manager.worker_event(running)
    copy = {k: event[k] for k in WORKER_EVENT_FIELDS if k in event} | {"payload": running["payload"]}
    assert manager.complete_and_archive_task(copy, attempt=1)
    manager.track_jobs()
    ((kind, detail),) = events.details()
    assert kind == "Job Failed" and (detail["completed"], detail["dead"], detail["cancelled"]) == (1, 2, 7)
    assert manager.get_job("f")["state"] == "failed"


def test_cancel_job_cancels_queued_and_waiting_tasks_and_the_end_follows(manager, events):
    lab = alpha(manager)
    manager.create_job(lab, [{"n": i} for i in range(5)], job_id="x")
    running = manager.mark_task_invoked(lab, manager.get_task_by_id("x.0"))
    job = manager.cancel_job("x")
    assert job["state"] == "cancelling" and job["cancelled"] == 4 and job["open"] == 1
    assert manager.archive_task({**running, "last_error": {"type": "Boom"}}, completed=False)
    manager.track_jobs()
    assert [(k, d["cancelled"], d["dead"]) for k, d in events.details()] == [("Job Cancelled", 4, 1)]
    assert manager.cancel_job("x")["state"] == "cancelled"  # an ended job stays as it is


def test_get_job_breakdown_of_open_tasks(manager):
    lab = alpha(manager)
    manager.create_job(lab, [{"n": i} for i in range(6)], job_id="b")
    manager.mark_task_invoked(lab, manager.get_task_by_id("b.0"))
    waiting = manager.mark_task_invoked(lab, manager.get_task_by_id("b.1"))
    manager.move_task_to_retry_table(waiting, 600)
    breakdown = manager.get_job("b", breakdown=True)["breakdown"]
    assert breakdown == {"queued": 4, "running": 1, "waiting": 1, "estimated": False, "sampled": 6}


# ---------------------------------------------------------------- the hot item, by design


def test_counter_writes_per_item_at_1000_closes_a_second_stay_far_below_dynamodb_limits(manager):
    """DynamoDB Local neither throttles a hot key nor conflicts transactions, so this is shown by design.

    A job closing 1,000 tasks in one second: every close adds one counter update; how many land on one
    item? DynamoDB allows 1,000 write units a second per partition (an item can't be split), and a
    transactional write of a small item costs 2 units. One counter item would take 2,000 units a second.
    """
    shards = manager.config["job_counter_shards"]
    writes: Counter[str] = Counter()
    for index in range(1000):  # the rows of 1,000 tasks of one job, as created
        row = {"task_id": f"hot.{index}", "job_id": "hot", "job_shard": index % shards}
        for item in manager._ctx.close_items(row, "completed"):
            writes[item["Update"]["Key"]["job_id"]["S"]] += 1
    per_item = max(writes.values())
    assert len(writes) == shards == 64 and per_item == 16
    assert per_item * 2 <= 1000 / 10  # 32 write units a second on the hottest item: under a tenth of the limit
    assert 1000 * 2 > 1000  # what a single counter item would need: over the limit


@pytest.mark.parametrize("settled_by", ["a new submit", "the tracker, once creation is quiet"])
def test_a_job_stopped_while_its_tasks_were_created_ends_with_the_tasks_that_exist(
    manager, clock, events, monkeypatch, settled_by
):
    from sosw.jobs import submit

    monkeypatch.setattr(submit, "CREATE_BATCH", 4)
    payloads = [{"n": i} for i in range(10)]
    # Given a creation that stopped after 4 of 10 tasks (its run out of time, or dead), then a cancel
    manager.create_job("alpha", payloads, job_id="half", remaining=lambda: 0.0)
    job = manager.cancel_job("half")
    assert (job["state"], job["cancelled"], job["total"]) == ("cancelling", 4, 10)
    manager.track_jobs()
    assert events.entries == []  # 4 of 10 closed: not the end yet
    # When the same job is submitted again, or the tracker finds its creation quiet for 16 minutes
    if settled_by == "a new submit":
        job = manager.create_job("alpha", payloads, job_id="half")
        assert (job["total"], job["created_now"]) == (4, 0)
    else:
        clock.advance(961)
    manager.track_jobs()
    # Then its total is what exists, and it ends, announced once
    assert [(k, d["total"], d["cancelled"]) for k, d in events.details()] == [("Job Cancelled", 4, 4)]
