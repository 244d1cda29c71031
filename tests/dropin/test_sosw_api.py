"""sosw's Python API, as sosw 0.7.51 users call it (the differential suite checks the same against sosw itself).

Each test names the point of the drop-in issue it covers.
"""

from __future__ import annotations

import json
from unittest.mock import MagicMock

import boto3

from sosw.labourer import Labourer
from sosw.managers.task import WORKER_EVENT_FIELDS
from tests.conftest import scan_all
from tests.dropin.differences import declared


def test_payload_is_handed_out_decoded_and_stays_json_text_through_every_move(manager, config):
    # Given a task read back through sosw's readers: its payload is a dict (point 2)
    alpha = manager.register_labourers()[0]
    created = manager.create_task(alpha, payload={"key": "cat.png", "n": [1, 2]})
    (task,) = manager.get_next_for_labourer(alpha)
    assert task["payload"]["key"] == "cat.png"
    # When the decoded task is handed back to every move
    invoked = manager.mark_task_invoked(alpha, task)
    assert invoked["payload"] == {"key": "cat.png", "n": [1, 2]}
    assert manager.move_task_to_retry_table(invoked, 0)
    assert scan_all(config)["retry"][0]["payload"] == created["payload"]
    manager.open_run_window()
    waiting = manager.get_tasks_to_retry_for_labourer(alpha)
    assert waiting[0]["payload"]["n"] == [1, 2]
    assert manager.retry_tasks(alpha, waiting) == 1
    assert scan_all(config)["tasks"][0]["payload"] == created["payload"]
    manager.open_run_window()
    assert manager.archive_task(manager.get_task_by_id(created["task_id"]), completed=False)
    # Then the tables hold the JSON text all along, and the closed task reads back decoded
    assert scan_all(config)["closed"][0]["payload"] == created["payload"]
    assert manager.get_closed_task_by_id(created["task_id"])["payload"] == {"key": "cat.png", "n": [1, 2]}
    assert manager.find_task(created["task_id"])[1]["payload"]["key"] == "cat.png"


def _closed(manager, clock, labourer, *, seconds, completed):
    """A task invoked now, closed ``seconds`` later, completed or dead (attempts 1)."""
    task = manager.create_task(labourer, payload={})
    manager.open_run_window()
    manager.mark_task_invoked(labourer, task)
    clock.advance(seconds)
    if completed:
        manager.mark_task_completed(task["task_id"], attempt=1)
    manager.open_run_window()
    assert manager.archive_task(manager.get_task_by_id(task["task_id"]), completed=completed)


def test_average_duration_is_sosws_an_int_counting_failed_attempts_at_max_duration(make_manager, clock):
    # Given no closed task: 0, an int (point 3)
    manager = make_manager()
    alpha = manager.register_labourers()[0]  # max_duration 60
    assert manager.get_average_labourer_duration(alpha) == 0
    # Given only a dead task of one attempt: it counts as the labourer's max_duration
    _closed(manager, clock, alpha, seconds=5, completed=False)
    assert manager.get_average_labourer_duration(alpha) == 60
    # Given also a task completed in 3 s: round((3 + 60) / 2) = 32, banker's rounding as Python's round
    _closed(manager, clock, alpha, seconds=3, completed=True)
    average = manager.get_average_labourer_duration(alpha)
    assert average == 32 and isinstance(average, int)
    # Given max_closed_to_analyse_for_duration = 1: the task invoked first counts (the dead one)
    assert make_manager(max_closed_to_analyse_for_duration=1).get_average_labourer_duration(alpha) == 60


def test_archive_task_takes_sosws_task_id_as_well_as_the_task(manager, config):
    # Given a completed task and a dead-to-be one (point 4)
    alpha = manager.register_labourers()[0]
    done, failed = (manager.create_task(alpha, payload={"n": i}) for i in range(2))
    for task in (done, failed):
        manager.mark_task_invoked(alpha, task)
    manager.mark_task_completed(done["task_id"], attempt=1)
    # When each is archived by id, as sosw's Scavenger does
    manager.archive_task(done["task_id"])
    manager.archive_task(failed["task_id"])
    # Then each is closed with its status; an id that is not open moves nothing
    closed = {t["task_id"]: t for t in scan_all(config)["closed"]}
    assert closed[done["task_id"]]["labourer_id_task_status"] == "alpha_1"
    assert closed[failed["task_id"]]["labourer_id_task_status"] == "alpha_0"
    assert manager.archive_task(done["task_id"]) is False, declared("archive-one-transaction")
    assert manager.archive_task("unknown") is False, declared("archive-one-transaction")
    assert scan_all(config)["tasks"] == [] and len(scan_all(config)["closed"]) == 2


def test_reports_write_sosws_result_and_stat_fields_beside_ours(manager, config):
    # Given two invoked tasks (point 5)
    alpha = manager.register_labourers()[0]
    done, failed = (manager.create_task(alpha, payload={"n": i}) for i in range(2))
    for task in (done, failed):
        manager.mark_task_invoked(alpha, task)
    # When one completes and the other fails, each with a result and stats
    result = {"ok": True, "n": "12", "flag": "false", "text": "a", "obj": {"x": 1}, "ratio": 0.5}
    assert manager.mark_task_completed(done["task_id"], result=result, stats={"rows": 5})
    assert manager.mark_task_failed(failed["task_id"], error_type="Boom", result={"error": "Boom"}, stats={"s": 1})
    rows = {t["task_id"]: t for t in scan_all(config)["tasks"]}
    # Then sosw's fields are there, typed as sosw types them; ours keep the values as reported
    completed = rows[done["task_id"]]
    assert {k: v for k, v in completed.items() if k.startswith(("result_", "stat_"))} == {
        "result_ok": True,
        "result_n": 12,
        "result_flag": False,
        "result_text": "a",
        "result_obj": {"x": 1},
        "result_ratio": 0.5,
        "stat_rows": 5,
    }
    assert completed["result"] == result and completed["stats"] == {"rows": 5} and "failed_attempts" not in completed
    failure = rows[failed["task_id"]]
    assert failure["result_error"] == "Boom" and failure["stat_s"] == 1 and failure["failed_attempts"] == 1
    assert failure["last_error"]["type"] == "Boom"
    # And a task that goes back to the queue for a new attempt leaves the last attempt's fields behind
    assert manager.move_task_to_retry_table(manager.get_task_by_id(failed["task_id"]), 0)
    manager.open_run_window()
    assert manager.retry_tasks(alpha, manager.get_tasks_to_retry_for_labourer(alpha)) == 1
    queued = manager.get_task_by_id(failed["task_id"])
    assert not [k for k in queued if k.startswith(("result_", "stat_"))] and queued["failed_attempts"] == 1


def test_a_completion_that_closes_at_once_writes_sosws_fields_in_the_closed_row(manager, config):
    alpha = manager.register_labourers()[0]
    task = manager.mark_task_invoked(alpha, manager.create_task(alpha, payload={"n": 1}))
    copy = {k: task[k] for k in ("task_id", "labourer_id", "created_at", "greenfield", "attempts", "payload")}
    assert manager.complete_and_archive_task(copy, attempt=1, result={"ok": 1}, stats={"rows": 2})
    (closed,) = scan_all(config)["closed"]
    assert closed["result_ok"] == 1 and closed["stat_rows"] == 2 and closed["result"] == {"ok": 1}
    assert closed["payload"] == '{"n": 1}'


def test_clients_can_be_replaced_as_sosw_users_tests_do(manager, lambda_endpoint):
    # Given sosw users' test idiom: replace a client with a MagicMock (point 6)
    alpha = manager.register_labourers()[0]
    task = manager.create_task(alpha, payload={"n": 1})
    manager.lambda_client = MagicMock()
    manager.ecology_client = MagicMock(**{"get_labourer_status.return_value": 2})
    # When the TaskManager invokes, registers and reads
    manager.invoke_task(alpha, task=task)
    manager.register_labourers()
    # Then the replacements are the clients used
    ((_, kwargs),) = manager.lambda_client.invoke.call_args_list
    assert kwargs["FunctionName"] == "alpha" and json.loads(kwargs["Payload"])["task_id"] == task["task_id"]
    manager.ecology_client.register_task_manager.assert_called_once_with(manager)
    assert manager.get_labourer("alpha").get_attr("health") == 2
    fake_dynamodb = MagicMock()
    manager.dynamo_db_client = fake_dynamodb
    assert manager.get_task_by_id("some-id") == {} and fake_dynamodb.get_item.call_args.kwargs["Key"] == {
        "task_id": {"S": "some-id"}
    }
    real = boto3.client("dynamodb")
    manager.dynamo_db_client = real
    assert manager.dynamo_db_client is real and manager.get_task_by_id(task["task_id"])["attempts"] == 1


def test_labourers_keep_custom_attributes_accept_int_ids_and_an_unknown_one_is_none(make_manager, lambda_endpoint):
    # Given sosw's own test idioms (point 7)
    custom = Labourer(id="some_lambda", arn="some_arn", some_attr="yes", max_duration=45)
    assert custom.some_attr == "yes" and custom.get_attr("some_attr") == "yes" and custom.max_duration == 45
    # And a Python config keyed by an int, as sosw's own test variables are
    manager = make_manager(labourers={42: {"max_simultaneous_invocations": 1}})
    by_int = manager.get_labourer(42)
    assert by_int is manager.get_labourer("42") and by_int.id == "42"
    # When its task goes through the lifecycle (sosw fails its claim: 42 != "42")
    manager.register_labourers()
    task = manager.create_task(by_int, payload={"n": 1})
    assert manager.invoke_task(by_int, task=task).value == "invoked"
    assert manager.mark_task_completed(task["task_id"], attempt=1)
    assert manager.archive_task(task["task_id"])
    # Then it is closed under the id as text; and an unknown labourer is None, as in sosw
    assert manager.get_closed_task_by_id(task["task_id"])["labourer_id_task_status"] == "42_1"
    assert manager.get_labourer("unknown") is None


def test_a_completion_that_closes_at_once_keeps_sosws_failure_count(manager, config):
    # Given a task that failed once, waited, and was claimed again
    alpha = manager.register_labourers()[0]
    task = manager.mark_task_invoked(alpha, manager.create_task(alpha, payload={"n": 1}))
    assert manager.mark_task_failed(task["task_id"], attempt=1, error_type="Boom")
    assert manager.move_task_to_retry_table(manager.get_task_by_id(task["task_id"]), 0)
    manager.open_run_window()
    assert manager.retry_tasks(alpha, manager.get_tasks_to_retry_for_labourer(alpha)) == 1
    manager.open_run_window()
    claimed = manager.mark_task_invoked(alpha, manager.get_task_by_id(task["task_id"]))
    # When the worker completes it with its copy of the task (what it was invoked with), closing it at once
    event = manager.worker_event(claimed)
    copy = {k: event[k] for k in WORKER_EVENT_FIELDS if k in event} | {"payload": json.dumps({"n": 1})}
    assert manager.complete_and_archive_task(copy, attempt=2, result={"ok": 1})
    # Then the closed row keeps sosw's failed_attempts, as sosw's archive keeps every field
    (closed,) = scan_all(config)["closed"]
    assert closed["failed_attempts"] == 1 and closed["attempts"] == 2 and closed["result_ok"] == 1
