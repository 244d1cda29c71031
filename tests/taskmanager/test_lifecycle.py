"""The lifecycle operations beyond the seed: fenced reports, transactional moves, creation modes."""

from __future__ import annotations

import itertools
import threading

import pytest

from sosw.errors import BulkCreateError, InvalidInputError, QueueCeilingError, TaskExistsError
from sosw.managers.task import ReportOutcome, TaskManager
from sosw.tasks import creation as creation_module
from tests.conftest import scan_all


def invoked_task(manager: TaskManager, **payload):
    alpha = manager.register_labourers()[0]
    task = manager.create_task(alpha, payload=payload)
    return alpha, manager.mark_task_invoked(alpha, task)


class CountingHook:
    """Counts DynamoDB requests by operation, through botocore's own event hooks."""

    def __init__(self, client) -> None:
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()  # bulk creation sends from several threads
        client.meta.events.register("before-call.dynamodb", self)

    def __call__(self, model, **kwargs) -> None:
        with self._lock:
            self.calls[model.name] = self.calls.get(model.name, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.calls.values())


# ---------------------------------------------------------------- reports


def test_completion_is_fenced_by_attempt(manager):
    _alpha, task = invoked_task(manager)
    assert manager.mark_task_completed(task["task_id"], attempt=2).outcome is ReportOutcome.STALE
    result = manager.mark_task_completed(task["task_id"], attempt=1, result={"rows": 3, "ratio": 0.5}, stats={"s": 1})
    assert result and result.outcome is ReportOutcome.ACCEPTED
    stored = manager.get_task_by_id(task["task_id"])
    assert stored["result"] == {"rows": 3, "ratio": 0.5} and stored["stats"] == {"s": 1}
    assert "completed_at" in stored
    # a duplicate delivery of the same report writes nothing more
    assert manager.mark_task_completed(task["task_id"], attempt=1).outcome is ReportOutcome.DUPLICATE
    # and a failure report for an attempt already completed is refused
    assert manager.mark_task_failed(task["task_id"], attempt=1).outcome is ReportOutcome.STALE


def test_sosw_style_report_without_attempt_completes_the_current_attempt(manager):
    _alpha, task = invoked_task(manager)
    assert manager.mark_task_completed(task["task_id"]).outcome is ReportOutcome.ACCEPTED


def test_report_for_a_queued_task_is_stale_and_writes_nothing(manager, config):
    alpha = manager.register_labourers()[0]
    task = manager.create_task(alpha, payload={})
    result = manager.mark_task_completed(task["task_id"])
    assert result.outcome is ReportOutcome.STALE and "queued" in result.reason
    assert scan_all(config)["tasks"] == [task]


def test_late_completion_after_the_task_moved_to_retry_leaves_no_phantom_row(manager, config):
    # sosw's weak spot: a late "completed" upserted a row holding only task_id and completed_at
    _alpha, task = invoked_task(manager)
    assert manager.move_task_to_retry_table(task, 60)
    result = manager.mark_task_completed(task["task_id"], attempt=1)
    assert result.outcome is ReportOutcome.STALE
    tables = scan_all(config)
    assert tables["tasks"] == [] and len(tables["retry"]) == 1 and "completed_at" not in tables["retry"][0]


def test_report_for_an_unknown_task_is_stale(manager, config):
    assert manager.mark_task_failed("nope", attempt=1).outcome is ReportOutcome.STALE
    assert scan_all(config)["tasks"] == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"attempt": 0}, "attempt"), ({"attempt": "1"}, "attempt"), ({"result": {"x": object()}}, "result")],
)
def test_bad_report_is_refused_and_writes_nothing(manager, kwargs, field):
    _alpha, task = invoked_task(manager)
    with pytest.raises(InvalidInputError, match=field):
        manager.mark_task_completed(task["task_id"], **kwargs)
    assert "completed_at" not in manager.get_task_by_id(task["task_id"])


def test_oversized_result_is_refused(manager):
    _alpha, task = invoked_task(manager)
    with pytest.raises(InvalidInputError, match=r"result.*limit"):
        manager.mark_task_completed(task["task_id"], attempt=1, result={"big": "x" * 70_000})


# ---------------------------------------------------------------- archive


def test_archive_completed_task_is_one_move_and_a_repeat_is_a_no_op(manager, config):
    _alpha, task = invoked_task(manager)
    manager.mark_task_completed(task["task_id"], attempt=1)
    completed = manager.get_task_by_id(task["task_id"])
    assert manager.archive_task(completed) is True
    assert manager.archive_task(completed) is False
    tables = scan_all(config)
    assert tables["tasks"] == [] and len(tables["closed"]) == 1
    closed = tables["closed"][0]
    assert closed["labourer_id_task_status"] == "alpha_1" and closed["closed_at"] == int(manager.clock.now())


def test_archive_as_dead(manager, config):
    _alpha, task = invoked_task(manager)
    assert manager.archive_task(task, completed=False) is True
    assert scan_all(config)["closed"][0]["labourer_id_task_status"] == "alpha_0"


def test_stale_archive_of_a_task_invoked_again_is_a_no_op(manager, config):
    # Given a copy of the task read before it was invoked again
    alpha, task = invoked_task(manager)
    manager.mark_task_invoked(alpha, task, check_running=False)
    # When an archive is attempted with the stale copy
    assert manager.archive_task(task, completed=False) is False
    # Then the task is still open in its newer attempt, and nothing was closed
    tables = scan_all(config)
    assert tables["closed"] == [] and tables["tasks"][0]["attempts"] == 2


def test_archive_refuses_a_completed_flag_that_does_not_match(manager, config):
    _alpha, task = invoked_task(manager)
    with pytest.raises(InvalidInputError, match="completed_at"):
        manager.archive_task(task, completed=True)  # a copy with no completion can't be archived as completed
    assert manager.archive_task({**task, "completed_at": 5}, completed=True) is False  # not completed in the table
    assert scan_all(config)["closed"] == []


def test_archive_with_a_copy_read_before_the_completion_keeps_nothing_stale(manager, config):
    # Given a completion with a result, and a copy of an older completion record
    _alpha, task = invoked_task(manager)
    manager.mark_task_completed(task["task_id"], attempt=1, result={"rows": 3})
    stale = {**manager.get_task_by_id(task["task_id"]), "completed_at": 1}
    # When the stale copy is archived, nothing moves; the fresh one keeps its result
    assert manager.archive_task(stale, completed=True) is False
    assert manager.archive_task(manager.get_task_by_id(task["task_id"])) is True
    assert scan_all(config)["closed"][0]["result"] == {"rows": 3}


def test_results_of_an_earlier_attempt_do_not_leak_into_the_next(manager):
    alpha, task = invoked_task(manager)
    manager.mark_task_failed(task["task_id"], attempt=1, error_type="E", result={"partial": True})
    again = manager.mark_task_invoked(alpha, manager.get_task_by_id(task["task_id"]), check_running=False)
    assert "result" not in again and "last_error" not in again and "failed_at" not in again
    manager.mark_task_completed(task["task_id"], attempt=2)
    assert "result" not in manager.get_task_by_id(task["task_id"])


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda m, t: m.archive_task({"task_id": t["task_id"]}), "labourer_id"),
        (lambda m, t: m.move_task_to_retry_table({k: v for k, v in t.items() if k != "greenfield"}, 5), "greenfield"),
        (
            lambda m, t: m.retry_task({"task_id": t["task_id"], "labourer_id": "alpha"}, "alpha", 1),
            "desired_launch_time",
        ),
        (lambda m, t: m.archive_task(42), "task"),  # a str is a task id (sosw's form)
    ],
)
def test_moves_with_incomplete_task_dicts_name_the_field(manager, config, call, field):
    _alpha, task = invoked_task(manager)
    with pytest.raises(InvalidInputError, match=field):
        call(manager, task)
    assert scan_all(config)["closed"] == [] and scan_all(config)["retry"] == []


@pytest.mark.parametrize("result", [{"x": float("nan")}, {"x": 10**40}, {"x": float("inf")}])
def test_unstorable_numbers_in_a_result_are_refused(manager, result):
    _alpha, task = invoked_task(manager)
    with pytest.raises(InvalidInputError, match="result"):
        manager.mark_task_completed(task["task_id"], attempt=1, result=result)
    assert "completed_at" not in manager.get_task_by_id(task["task_id"])


def test_an_id_waiting_for_retry_under_another_labourer_is_taken(manager, config):
    alpha, beta = manager.register_labourers()
    waiting = manager.ensure_task(beta, "same", {}).task
    manager.move_task_to_retry_table(manager.mark_task_invoked(beta, waiting), 60)
    assert manager.ensure_task(alpha, "same", {}).created is False
    with pytest.raises(TaskExistsError):
        manager.create_task(alpha, strict=False, task_id="same")
    assert scan_all(config)["tasks"] == []


def test_reads_for_an_unknown_labourer_are_refused(manager):
    from sosw.errors import UnknownLabourerError
    from sosw.labourer import Labourer

    with pytest.raises(UnknownLabourerError, match="zzz"):
        manager.get_next_for_labourer(Labourer(id="zzz"))


def test_closed_tasks_get_a_ttl_when_configured(make_manager, config, clock):
    manager = make_manager(closed_task_ttl_seconds=3600)
    _alpha, task = invoked_task(manager)
    manager.archive_task(task, completed=False)
    assert scan_all(config)["closed"][0]["ttl"] == int(clock.now()) + 3600


def test_move_to_retry_refuses_a_completed_task(manager, config):
    _alpha, task = invoked_task(manager)
    manager.mark_task_completed(task["task_id"], attempt=1)
    assert manager.move_task_to_retry_table(manager.get_task_by_id(task["task_id"]), 10) is False
    assert scan_all(config)["retry"] == []


def test_average_duration_of_recent_closed_tasks(manager, clock):
    alpha, task = invoked_task(manager)
    clock.advance(12)
    manager.mark_task_completed(task["task_id"], attempt=1)
    manager.archive_task(manager.get_task_by_id(task["task_id"]))
    assert manager.get_average_labourer_duration(alpha) == 12


# ---------------------------------------------------------------- creation modes


def test_bulk_creation_keeps_fifo_and_costs_a_request_per_25_tasks(manager):
    alpha = manager.register_labourers()[0]
    hook = CountingHook(manager.dynamo_db_client)
    progress = []
    ids = manager.create_tasks(alpha, [{"i": i} for i in range(60)], on_progress=lambda d, t: progress.append((d, t)))
    assert hook.calls == {"Query": 1, "BatchWriteItem": 3}
    # chunks are written in parallel: progress grows by a chunk at a time, whichever ends first
    assert [total for _done, total in progress] == [60, 60, 60] and progress[-1] == (60, 60)
    done = [0] + [d for d, _ in progress]
    assert sorted(b - a for a, b in itertools.pairwise(done)) == [10, 25, 25]
    assert manager.get_next_for_labourer(alpha, 60, only_ids=True) == ids
    more = manager.create_tasks(alpha, [{"i": 60}])
    assert manager.get_next_for_labourer(alpha, 61, only_ids=True)[-1] == more[0]


def test_bulk_creation_that_fails_part_way_names_what_it_wrote(manager, config):
    # Given a DynamoDB that refuses the chunk holding task number 60 of 100
    alpha = manager.register_labourers()[0]

    def refuse(params, **_):
        items = params["RequestItems"][manager.tasks_table]
        if any('"i": 60}' in request["PutRequest"]["Item"]["payload"]["S"] for request in items):
            raise ConnectionError("injected: this chunk is lost")

    manager.dynamo_db_client.meta.events.register("before-parameter-build.dynamodb.BatchWriteItem", refuse)

    # When 100 tasks are created in bulk
    with pytest.raises(BulkCreateError) as caught:
        manager.create_tasks(alpha, [{"i": i} for i in range(100)])

    # Then the error splits the ids into written (exactly the stored ones) and unsure (the lost chunk)
    error = caught.value
    stored = {task["task_id"]: task for task in scan_all(config)["tasks"]}
    assert len(error.written) + len(error.unsure) == 100 and not set(error.written) & set(error.unsure)
    # (chunks 0 and 1 were sent before the failing one; chunk 3 is sent only if it started before the failure)
    assert set(error.written) == set(stored) and len(error.written) in (50, 75)
    assert '"i": 60}' not in " ".join(stored[i]["payload"] for i in stored)


def test_bulk_creation_stops_sending_after_a_failed_chunk(manager, config, monkeypatch):
    # Given one writer at a time, and a DynamoDB that refuses the first chunk
    monkeypatch.setattr(creation_module, "BULK_WRITERS", 1)
    alpha = manager.register_labourers()[0]
    sent = []

    def refuse_first(params, **_):
        sent.append(1)
        if len(sent) == 1:
            raise ConnectionError("injected: the first chunk is lost")

    manager.dynamo_db_client.meta.events.register("before-parameter-build.dynamodb.BatchWriteItem", refuse_first)

    # When 100 tasks are created in bulk
    with pytest.raises(BulkCreateError) as caught:
        manager.create_tasks(alpha, [{"i": i} for i in range(100)])

    # Then the chunks not yet sent are not sent, and are reported unsure with the failed one
    assert len(sent) == 1
    assert caught.value.written == [] and len(caught.value.unsure) == 100
    assert scan_all(config)["tasks"] == []


def test_bulk_creation_whose_progress_callback_fails_names_what_it_wrote(manager, config):
    # Given a progress callback that breaks after the first chunk (a closed pipe, say)
    alpha = manager.register_labourers()[0]

    def progress(done, total):
        raise BrokenPipeError("the progress printer is gone")

    # When 100 tasks are created in bulk
    with pytest.raises(BulkCreateError) as caught:
        manager.create_tasks(alpha, [{"i": i} for i in range(100)], on_progress=progress)

    # Then the error still splits the ids exactly, and says why it stopped
    error = caught.value
    stored = {task["task_id"] for task in scan_all(config)["tasks"]}
    assert set(error.written) == stored and len(error.written) + len(error.unsure) == 100
    assert isinstance(error.__cause__, BrokenPipeError)


def test_bulk_creation_with_one_bad_payload_writes_nothing(manager, config):
    alpha = manager.register_labourers()[0]
    payloads = [{"i": i} for i in range(30)] + [{"bad": float("nan")}]
    with pytest.raises(InvalidInputError, match=r"payloads\[30\]"):
        manager.create_tasks(alpha, payloads)
    with pytest.raises(InvalidInputError, match=r"payloads\[1\]"):
        manager.create_tasks(alpha, [{}, "not a dict"])
    assert scan_all(config)["tasks"] == []


def test_idempotent_creation_never_resets_an_existing_task(manager, config):
    alpha = manager.register_labourers()[0]
    first = manager.ensure_tasks(alpha, {"a": {"v": 1}, "b": {"v": 1}})
    assert [r.created for r in first] == [True, True]
    manager.mark_task_invoked(alpha, first[0].task)
    again = manager.ensure_tasks(alpha, {"a": {"v": 2}, "c": {"v": 2}})
    assert [r.created for r in again] == [False, True]
    assert again[0].task["attempts"] == 1 and again[0].task["payload"] == '{"v": 1}'
    assert sorted(t["task_id"] for t in scan_all(config)["tasks"]) == ["a", "b", "c"]


def test_idempotent_creation_in_bulk_crosses_transaction_chunks(manager, config):
    alpha = manager.register_labourers()[0]
    manager.ensure_tasks(alpha, {f"t{i}": {} for i in range(0, 80, 2)})
    results = manager.ensure_tasks(alpha, {f"t{i}": {"new": True} for i in range(80)})
    assert [r.created for r in results] == [i % 2 == 1 for i in range(80)]
    assert len(scan_all(config)["tasks"]) == 80


def test_idempotent_creation_sees_waiting_and_closed_tasks(manager, config):
    alpha = manager.register_labourers()[0]
    waiting = manager.ensure_task(alpha, "w", {}).task
    manager.move_task_to_retry_table(manager.mark_task_invoked(alpha, waiting), 60)
    assert manager.ensure_task(alpha, "w", {}).created is False
    assert scan_all(config)["tasks"] == []


def test_priority_task_goes_to_the_head_of_the_queue(manager):
    alpha = manager.register_labourers()[0]
    ids = manager.create_tasks(alpha, [{}, {}])
    urgent = manager.create_priority_task(alpha, {"urgent": True})
    assert manager.get_next_for_labourer(alpha, 3, only_ids=True) == [urgent["task_id"], *ids]


def test_delayed_task_waits_in_the_retry_table(make_manager, config, clock):
    manager = make_manager()
    alpha = manager.register_labourers()[0]
    task = manager.create_delayed_task(alpha, {"later": True}, delay=300, task_id="d1")
    assert scan_all(config)["tasks"] == [] and manager.get_tasks_to_retry_for_labourer(alpha) == []
    with pytest.raises(TaskExistsError):
        manager.create_delayed_task(alpha, {}, delay=5, task_id="d1")
    with pytest.raises(InvalidInputError, match="delay"):
        manager.create_delayed_task(alpha, {}, delay=-5)
    clock.advance(301)
    manager = make_manager()
    alpha = manager.register_labourers()[0]
    assert [t["task_id"] for t in manager.get_tasks_to_retry_for_labourer(alpha)] == [task["task_id"]]
    assert manager.retry_tasks(alpha, manager.get_tasks_to_retry_for_labourer(alpha)) == 1
    assert manager.get_next_for_labourer(alpha, only_ids=True) == ["d1"]


def test_queue_ceiling_refuses_before_greenfields_reach_the_invoked_range(make_manager, config, clock):
    # A step so large that the second task would pass "now": refused, nothing written
    manager = make_manager(greenfield_task_step=int(clock.now()) // 2)
    alpha = manager.register_labourers()[0]
    manager.create_task(alpha, payload={})
    with pytest.raises(QueueCeilingError, match="greenfield"):
        manager.create_task(alpha, payload={})
    with pytest.raises(QueueCeilingError):
        manager.create_tasks(alpha, [{}, {}])
    assert len(scan_all(config)["tasks"]) == 1
    assert manager.get_next_for_labourer(alpha, 5)[0]["greenfield"] < clock.now()


def test_queue_length_is_estimated_past_the_page_budget(make_manager):
    manager = make_manager(queue_count_max_pages=1)
    alpha = manager.register_labourers()[0]
    manager.create_tasks(alpha, [{"pad": "x" * 2000} for _ in range(700)])  # > 1 MB: more than one page
    assert manager.get_length_of_queue_for_labourer(alpha) == 700


# ---------------------------------------------------------------- completion that closes at once


def worker_copy(manager, task):
    """What a worker received: its task's identity fields and payload."""
    return {k: task[k] for k in ("task_id", "labourer_id", "created_at", "greenfield", "attempts", "payload")}


def test_completion_with_the_workers_copy_closes_the_task_in_one_transaction(manager, config):
    _alpha, task = invoked_task(manager, n=1)
    hook = CountingHook(manager.dynamo_db_client)
    result = manager.complete_and_archive_task(worker_copy(manager, task), attempt=1, result={"ok": 1}, stats={"s": 2})
    assert result.outcome is ReportOutcome.ACCEPTED and hook.calls == {"TransactWriteItems": 1}
    tables = scan_all(config)
    assert tables["tasks"] == []
    [closed] = tables["closed"]
    assert closed["labourer_id_task_status"] == "alpha_1" and closed["result"] == {"ok": 1}
    # the payload stays JSON text in the table; the readers hand it out decoded, as sosw's do
    assert closed["payload"] == '{"n": 1}' and task["payload"] == {"n": 1} and "completed_at" in closed
    # the same report again: a duplicate, nothing more written
    again = manager.complete_and_archive_task(worker_copy(manager, task), attempt=1)
    assert again.outcome is ReportOutcome.DUPLICATE and scan_all(config)["closed"] == [closed]


def test_completion_with_a_stale_copy_writes_nothing(manager, config):
    alpha, task = invoked_task(manager)
    copy = worker_copy(manager, task)
    manager.mark_task_invoked(alpha, task, check_running=False)  # attempt 2 now
    assert manager.complete_and_archive_task(copy, attempt=1).outcome is ReportOutcome.STALE
    with pytest.raises(InvalidInputError, match="attempts"):
        manager.complete_and_archive_task(copy, attempt=2)
    forged = {**copy, "attempts": 2, "greenfield": 5}
    assert manager.complete_and_archive_task(forged, attempt=2).outcome is ReportOutcome.STALE
    assert scan_all(config)["closed"] == [] and scan_all(config)["tasks"][0]["attempts"] == 2
