"""Every method of the seed, on both backends (moto, and DynamoDB Local with ``-m integration``).

Given / When / Then in each test; "nothing written" is checked by scanning all four tables.
"""

from __future__ import annotations

import json

import pytest

from sosw.errors import InvalidInputError, TaskAlreadyInvokedError, TaskExistsError, UnknownLabourerError
from sosw.labourer import Labourer
from sosw.managers.task import TaskManager
from tests.conftest import scan_all
from tests.dropin.differences import declared


def registered(manager: TaskManager, labourer_id: str = "alpha") -> Labourer:
    return next(lab for lab in manager.register_labourers() if lab.id == labourer_id)


def test_constructing_with_custom_config_makes_no_aws_call(monkeypatch):
    # Given no region and no endpoint at all: any client creation would fail
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    # When
    manager = TaskManager({"labourers": {"alpha": {}}})
    # Then nothing was created, and the sosw names and defaults are in place
    assert manager._ctx._dynamodb is None and manager._ctx._lambda is None
    assert manager.tasks_table == "sosw_tasks"
    assert manager.config["dynamo_db_config"]["index_greenfield"] == "sosw_tasks_greenfield"
    assert manager.retry_table == "sosw_retry_tasks" and manager.closed_table == "sosw_closed_tasks"
    assert manager.config["greenfield_invocation_delta"] == 31_557_600
    assert manager.config["greenfield_task_step"] == 1000 and manager.config["max_attempts"] == 3


def test_extra_keywords_are_accepted_as_the_seed_signature_says(caplog):
    manager = TaskManager({}, test=True)
    assert manager.config["max_attempts"] == 3


def test_get_labourers_applies_global_and_per_labourer_settings():
    manager = TaskManager({"labourers": {"a": {}, "b": {"max_attempts": 5}}, "max_attempts_a": 4})
    a, b = manager.get_labourers()
    assert (a.id, a.max_attempts, a.max_simultaneous_invocations) == ("a", 4, 1)
    assert b.max_attempts == 5
    assert manager.get_labourer("zeta") is None  # as sosw's
    with pytest.raises(UnknownLabourerError, match="'zeta'"):  # where one is used
        manager.create_task(Labourer(id="zeta"), payload={})


def test_register_labourers_sets_the_windows_and_hands_itself_to_ecology(manager, clock):
    labourers = manager.register_labourers()
    alpha = labourers[0]
    now = int(clock.now())
    assert alpha.start == now
    assert alpha.invoked == now + 31_557_600
    assert alpha.expired == alpha.invoked - (60 + 30)
    assert alpha.health == 4 and alpha.max_duration == 60
    assert manager.ecology_client.task_client is manager


def test_get_db_field_name_renames_only_configured_fields():
    manager = TaskManager({"dynamo_db_config": {"field_names": {"task_id": "id"}}})
    assert manager.get_db_field_name("task_id") == "id"
    assert manager.get_db_field_name("greenfield") == "greenfield"


def test_construct_payload_for_task_merges_kwargs():
    manager = TaskManager({})
    assert json.loads(manager.construct_payload_for_task(payload={"a": 1}, b=2)) == {"a": 1, "b": 2}
    assert json.loads(manager.construct_payload_for_task(payload='{"a": 1}')) == {"a": 1}
    assert json.loads(manager.construct_payload_for_task(payload="plain")) == {"payload": "plain"}
    assert json.loads(manager.construct_payload_for_task(payload=[1, 2], c=3)) == {"payload": [1, 2], "c": 3}
    with pytest.raises(InvalidInputError, match="payload"):
        manager.construct_payload_for_task(payload={"when": object()})


def test_create_task_puts_it_at_the_end_of_the_queue(manager, config):
    alpha = registered(manager)
    first = manager.create_task(alpha, payload={"n": 1})
    second = manager.create_task(alpha, n=2)
    assert first["greenfield"] == 1000 and second["greenfield"] == 2000
    assert first["attempts"] == 0 and first["labourer_id"] == "alpha"
    # stored as JSON text, as sosw stores it; read back decoded, as sosw's readers return it
    assert second["payload"] == '{"n": 2}' and manager.get_task_by_id(second["task_id"])["payload"] == {"n": 2}
    assert manager.get_next_for_labourer(alpha)[0]["payload"] == {"n": 1}
    assert sorted(t["payload"] for t in scan_all(config)["tasks"]) == ['{"n": 1}', '{"n": 2}']


def test_create_task_strict_refuses_generated_fields_and_writes_nothing(manager, config):
    alpha = registered(manager)
    with pytest.raises(InvalidInputError, match=r"task_id.*strict=False"):
        manager.create_task(alpha, task_id="mine")
    with pytest.raises(InvalidInputError, match="greenfield"):
        manager.create_task(alpha, greenfield=5)
    manager.create_task(alpha, labourer_id="alpha", attempts=0)  # equal to the generated value: accepted
    assert len(scan_all(config)["tasks"]) == 1


def test_create_task_non_strict_never_overwrites_an_existing_task(manager, config):
    alpha = registered(manager)
    manager.create_task(alpha, strict=False, task_id="t1", payload={"v": "original"})
    with pytest.raises(TaskExistsError, match="t1"):
        manager.create_task(alpha, strict=False, task_id="t1", payload={"v": "overwrite"})
    tables = scan_all(config)
    assert [t["payload"] for t in tables["tasks"]] == ['{"v": "original"}']


def test_create_task_refuses_an_id_that_is_already_closed(manager, config, clock):
    alpha = registered(manager)
    task = manager.create_task(alpha, strict=False, task_id="done")
    manager.mark_task_invoked(alpha, task)
    manager.mark_task_completed("done", attempt=1)
    assert manager.archive_task(manager.get_task_by_id("done"))
    with pytest.raises(TaskExistsError, match="sosw_closed_tasks"):
        manager.create_task(alpha, strict=False, task_id="done")
    assert scan_all(config)["tasks"] == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"payload": {"x": {1, 2}}}, "payload"),
        ({"payload": {"big": "x" * 400_000}}, "payload"),
        ({"strict": False, "labourer_id": "beta"}, "labourer_id"),
        ({"strict": False, "task_id": ""}, "task_id"),
        ({"strict": False, "greenfield": "soon"}, "greenfield"),
        ({"strict": False, "greenfield": 1_900_000_000}, "greenfield"),
    ],
)
def test_create_task_bad_input_names_the_field_and_writes_nothing(manager, config, kwargs, field):
    alpha = registered(manager)
    with pytest.raises((InvalidInputError, RuntimeError), match=field):
        manager.create_task(alpha, **kwargs)
    assert scan_all(config)["tasks"] == []


def test_create_task_for_an_unknown_labourer_is_refused(manager, config):
    with pytest.raises(UnknownLabourerError, match="ghost"):
        manager.create_task(Labourer(id="ghost"), payload={})
    assert scan_all(config)["tasks"] == []


def test_oversized_task_error_names_the_limit(manager):
    alpha = registered(manager)
    with pytest.raises(InvalidInputError) as info:
        manager.create_task(alpha, payload={"big": "x" * 350_000})
    assert info.value.field == "payload" and info.value.limit == 400 * 1024 - 64 * 1024


def test_get_task_by_id(manager):
    alpha = registered(manager)
    task = manager.create_task(alpha, payload={"a": 1})
    assert manager.get_task_by_id(task["task_id"]) == {**task, "payload": {"a": 1}}  # decoded, as sosw's
    assert manager.get_task_by_id("missing") == {}


def test_get_next_for_labourer_is_fifo_and_per_labourer(manager):
    alpha, beta = manager.register_labourers()
    ids = manager.create_tasks(alpha, [{"i": i} for i in range(5)])
    manager.create_task(beta, payload={})
    assert manager.get_next_for_labourer(alpha, cnt=3, only_ids=True) == ids[:3]
    tasks = manager.get_next_for_labourer(alpha, cnt=10)
    assert [t["task_id"] for t in tasks] == ids
    assert manager.get_next_for_labourer(alpha) == [tasks[0]]


def test_oldest_newest_and_length_of_queue(manager):
    alpha = registered(manager)
    assert manager.get_oldest_greenfield_for_labourer(alpha) == 1000  # empty queue: the step, as in sosw
    assert manager.get_length_of_queue_for_labourer(alpha) == 0
    manager.create_tasks(alpha, [{}] * 7)
    assert manager.get_oldest_greenfield_for_labourer(alpha) == 1000
    assert manager.get_newest_greenfield_for_labourer(alpha) == 7000
    assert manager.get_oldest_greenfield_for_labourer(alpha, reverse=True) == 7000
    assert manager.get_length_of_queue_for_labourer(alpha) == 7


def test_mark_task_invoked_claims_once(manager, clock):
    alpha = registered(manager)
    task = manager.create_task(alpha, payload={})
    claimed = manager.mark_task_invoked(alpha, task)
    assert claimed["attempts"] == 1
    assert claimed["greenfield"] == int(clock.now()) + 31_557_600
    with pytest.raises(RuntimeError):
        manager.mark_task_invoked(alpha, task)
    with pytest.raises(TaskAlreadyInvokedError):
        manager.mark_task_invoked(alpha, task)
    # check_running=False updates without the condition
    again = manager.mark_task_invoked(alpha, task, check_running=False)
    assert again["attempts"] == 2


def test_mark_task_invoked_refuses_a_task_of_another_labourer(manager, config):
    alpha, beta = manager.register_labourers()
    task = manager.create_task(alpha, payload={})
    with pytest.raises(InvalidInputError, match="labourer_id"):
        manager.mark_task_invoked(beta, task)
    forged = {**task, "labourer_id": "beta"}  # a dict forged for another labourer
    with pytest.raises(InvalidInputError, match="belongs to 'alpha'"):
        manager.mark_task_invoked(beta, forged)
    assert manager.get_task_by_id(task["task_id"]) == {**task, "payload": {}}


def test_is_valid_task(manager):
    alpha = registered(manager)
    task = manager.create_task(alpha, payload={})
    assert manager.is_valid_task(task)
    assert not manager.is_valid_task({**task, "greenfield": None})
    assert not manager.is_valid_task({"task_id": "x"})
    assert not manager.is_valid_task("task")  # type: ignore[arg-type]


def test_running_expired_completed_and_invoked_states(make_manager, clock):
    # Given three invoked tasks: one reported completed, one failed, one silent
    manager = make_manager()
    alpha = registered(manager)
    done, failed, silent, queued = (manager.create_task(alpha, payload={"i": i}) for i in range(4))
    for task in (done, failed, silent):
        manager.mark_task_invoked(alpha, task)
    manager.mark_task_completed(done["task_id"], attempt=1)
    manager.mark_task_failed(failed["task_id"], attempt=1, error_type="ValueError", error_message="bad")

    # Then, in the same run, the silent one is running and all three were invoked in this run
    ids = lambda tasks: sorted(t["task_id"] for t in tasks)  # noqa: E731
    assert ids(manager.get_running_tasks_for_labourer(alpha)) == [silent["task_id"]]
    assert manager.get_count_of_running_tasks_for_labourer(alpha) == 1
    assert manager.get_running_tasks_for_labourer(alpha, count=True) == 1
    assert ids(manager.get_completed_tasks_for_labourer(alpha)) == [done["task_id"]]
    assert ids(manager.get_failed_tasks_for_labourer(alpha)) == [failed["task_id"]]
    assert manager.get_failed_tasks_for_labourer(alpha)[0]["last_error"] == {"type": "ValueError", "message": "bad"}
    assert len(manager.get_invoked_tasks_for_labourer(alpha)) == 3
    assert ids(manager.get_invoked_tasks_for_labourer(alpha, completed=True)) == [done["task_id"]]
    assert len(manager.get_invoked_tasks_for_labourer(alpha, completed=False)) == 2
    assert manager.get_expired_tasks_for_labourer(alpha) == []
    assert manager.get_next_for_labourer(alpha, 5, only_ids=True) == [queued["task_id"]]

    # When a later run starts after duration + cooldown (60 + 30 s)
    clock.advance(91)
    later = make_manager()
    alpha = registered(later)

    # Then the silent task is expired, not running; the completed one is still completed
    assert ids(later.get_expired_tasks_for_labourer(alpha)) == [silent["task_id"]]
    assert later.get_count_of_running_tasks_for_labourer(alpha) == 0
    assert ids(later.get_completed_tasks_for_labourer(alpha)) == [done["task_id"]]
    assert later.get_invoked_tasks_for_labourer(alpha) == []  # none invoked during this run


def test_move_to_retry_table_and_back_to_the_head_of_the_queue(make_manager, config, clock):
    manager = make_manager()
    alpha = registered(manager)
    first, second = (manager.create_task(alpha, payload={"i": i}) for i in range(2))
    manager.mark_task_invoked(alpha, first)
    manager.mark_task_failed(first["task_id"], attempt=1, error_type="Boom")
    failed = manager.get_failed_tasks_for_labourer(alpha)[0]

    # When the failed task is moved to the retry table with a 120 s delay
    assert manager.move_task_to_retry_table(failed, 120) is True
    tables = scan_all(config)
    assert [t["task_id"] for t in tables["retry"]] == [first["task_id"]]
    assert tables["retry"][0]["desired_launch_time"] == int(clock.now()) + 120
    assert [t["task_id"] for t in tables["tasks"]] == [second["task_id"]]
    # Then it is not due yet...
    assert manager.get_tasks_to_retry_for_labourer(alpha) == []
    # ...and once due, it goes back before every queued task, with its attempts kept
    clock.advance(121)
    manager = make_manager()
    alpha = registered(manager)
    due = manager.get_tasks_to_retry_for_labourer(alpha)
    assert [t["task_id"] for t in due] == [first["task_id"]]
    head = manager.get_oldest_greenfield_for_labourer(alpha) - 1
    assert manager.retry_task(due[0], "alpha", head) is True
    nxt = manager.get_next_for_labourer(alpha, 2)
    assert [t["task_id"] for t in nxt] == [first["task_id"], second["task_id"]]
    assert nxt[0]["attempts"] == 1 and "failed_at" not in nxt[0] and "desired_launch_time" not in nxt[0]
    assert nxt[0]["last_error"]["type"] == "Boom"  # kept for the dead-letter notification
    # A repeated retry of the same row is a no-op: no duplicate, no resurrection
    assert manager.retry_task(due[0], "alpha", head - 5) is False
    assert len(scan_all(config)["tasks"]) == 2 and scan_all(config)["retry"] == []


def test_retry_task_refuses_a_task_of_another_labourer(manager):
    with pytest.raises(InvalidInputError, match="labourer_id"):
        manager.retry_task({"task_id": "t", "labourer_id": "alpha", "desired_launch_time": 1}, "beta", 5)


def test_move_task_to_retry_table_refuses_a_negative_delay(manager, config):
    alpha = registered(manager)
    task = manager.create_task(alpha, payload={})
    with pytest.raises(InvalidInputError, match="wanted_delay"):
        manager.move_task_to_retry_table(task, -1)
    assert scan_all(config)["retry"] == []


def test_due_retries_go_to_the_head_in_order_spaced_by_the_step(make_manager, config, clock):
    # A declared difference from sosw (which puts each at oldest - 1): the queue's length is read from its ends
    manager = make_manager()
    alpha = registered(manager)
    queued = manager.create_task(alpha, payload={"queued": True})
    for i in range(2):
        manager.create_delayed_task(alpha, {"retry": i}, delay=1)
        clock.advance(0.01)
    clock.advance(2)
    manager = make_manager()
    alpha = registered(manager)
    due = manager.get_tasks_to_retry_for_labourer(alpha)
    oldest = manager.get_oldest_greenfield_for_labourer(alpha)
    assert manager.retry_tasks(alpha, due) == 2
    step = manager.config["greenfield_task_step"]
    rows = sorted(scan_all(config)["tasks"], key=lambda t: t["greenfield"])
    assert [t["greenfield"] for t in rows] == [oldest - 2 * step, oldest - step, oldest], declared("retry-spacing")
    assert [t["task_id"] for t in rows] == [*(t["task_id"] for t in due), queued["task_id"]]
