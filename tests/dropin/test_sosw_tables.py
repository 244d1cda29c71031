"""The stack on tables exactly as sosw creates them: an INCLUDE closed-tasks index, provisioned capacity.

sosw's closed-tasks index projects only ``completed_at``, ``greenfield`` and ``attempts``: a query on it can't
filter on anything else, and returns nothing else. Everything that reads dead tasks must still work.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sosw.scavenger import Scavenger
from sosw.schema import table_schemas

REFERENCE = json.loads((Path(__file__).parent / "sosw_tables.json").read_text())
ROLES = {"tasks": "sosw_tasks", "retry": "sosw_retry_tasks", "closed": "sosw_closed_tasks"}


def _normalised(kwargs):
    kwargs = {k: v for k, v in kwargs.items() if k != "Tags"}
    kwargs["AttributeDefinitions"] = sorted(kwargs["AttributeDefinitions"], key=lambda a: a["AttributeName"])
    return kwargs


def test_the_sosw_definitions_are_sosws_cloudformation_tables_exactly():
    # Given the CreateTable bodies of sosw's own CloudFormation template (tests/dropin/sosw_tables.json)
    schemas = table_schemas(sosw_definitions=True)
    # Then the schema module's sosw definitions create exactly those tables
    for role, name in ROLES.items():
        assert _normalised(schemas[role].create_table_kwargs()) == _normalised(REFERENCE[name]), role
    # And the stack's own tables keep their richer projection
    own = table_schemas()["closed"].create_table_kwargs()
    assert own["GlobalSecondaryIndexes"][0]["Projection"] == {"ProjectionType": "ALL"}


def _dead_task(manager, labourer_id="beta", error_type="Boom", **payload):
    """A task of ``labourer_id`` closed as dead by the Scavenger's rules (max_attempts reached)."""
    labourer = manager.get_labourer(labourer_id)
    task = manager.create_task(labourer, payload=payload or {"n": 1})
    for attempt in range(1, labourer.max_attempts + 1):
        manager.open_run_window()
        manager.mark_task_invoked(labourer, manager.get_task_by_id(task["task_id"]))
        assert manager.mark_task_failed(task["task_id"], attempt=attempt, error_type=error_type, error_message="x")
        if attempt < labourer.max_attempts:
            manager.open_run_window()
            failed = manager.get_task_by_id(task["task_id"])
            assert manager.move_task_to_retry_table(failed, 0)
            manager.open_run_window()
            assert manager.retry_tasks(labourer, manager.get_tasks_to_retry_for_labourer(labourer)) == 1
    assert manager.archive_task(manager.get_task_by_id(task["task_id"]), completed=False)
    return task["task_id"]


@pytest.mark.integration
def test_scavenger_recovers_a_pending_dead_task_notification_on_sosw_tables(sosw_manager, clock, make_topic):
    # Given a dead task whose notification could not be published (the topic was unreachable)
    topic = make_topic()
    gamma = sosw_manager.get_labourer("gamma")  # max_attempts 1
    task = sosw_manager.create_task(gamma, payload={"n": 1})
    sosw_manager.open_run_window()
    sosw_manager.mark_task_invoked(gamma, task)
    sosw_manager.mark_task_failed(task["task_id"], attempt=1, error_type="Fatal", error_message="x")
    first = Scavenger(sosw_manager, topic_arn=topic.arn + "-gone").run()
    assert first.total("dead") == 1 and not first.errors
    assert topic.messages() == []
    # When the Scavenger runs again with the topic reachable
    second = Scavenger(sosw_manager, topic_arn=topic.arn).run()
    # Then it publishes the pending notification, once, without error
    assert not second.errors
    assert [m["task_id"] for m in topic.messages()] == [task["task_id"]]
    assert not Scavenger(sosw_manager, topic_arn=topic.arn).run().errors
    assert topic.messages() == []


@pytest.mark.integration
def test_dead_tasks_by_error_type_come_back_whole_on_sosw_tables(sosw_manager):
    # Given two dead tasks of beta, one per error type
    boom = _dead_task(sosw_manager, error_type="Boom", n=1)
    other = _dead_task(sosw_manager, error_type="Other", n=2)
    beta = sosw_manager.get_labourer("beta")
    # When dead tasks are read by error type, and all of them
    by_error = sosw_manager.get_dead_tasks(beta, error_type="Boom")
    every = sosw_manager.get_dead_tasks(beta)
    # Then the filter works, and each task comes back whole: labourer, payload, last error
    assert [t["task_id"] for t in by_error] == [boom]
    assert {t["task_id"] for t in every} == {boom, other}
    for task in every:
        assert task["labourer_id"] == "beta" and "payload" in task and task["last_error"]["type"] in ("Boom", "Other")
    # And a dead task can be redriven from what was read
    assert sosw_manager.redrive_task(by_error[0])


class Requests:
    """Every DynamoDB request of a client, with its table and index (botocore's own event hook)."""

    def __init__(self, client) -> None:
        self.calls: list[tuple[str, str, str]] = []
        client.meta.events.register("provide-client-params.dynamodb", self)

    def __call__(self, params, model, **kwargs) -> None:
        tables = params.get("TableName") or ",".join(params.get("RequestItems", {}))
        self.calls.append((model.name, tables, params.get("IndexName", "")))

    def on(self, table: str) -> list[tuple[str, str, str]]:
        return [c for c in self.calls if table in c[1]]


@pytest.mark.integration
def test_recovering_a_pending_notification_reads_no_other_dead_task(sosw_manager, sosw_config, make_topic):
    # Given dead tasks whose notifications were published, and one left pending
    topic = make_topic()
    gamma = sosw_manager.get_labourer("gamma")
    closed = sosw_config["sosw_closed_tasks_table"]

    def close_dead(count, topic_arn):
        ids = sosw_manager.create_tasks(gamma, [{"n": i} for i in range(count)])
        sosw_manager.open_run_window()
        for task_id in ids:
            sosw_manager.mark_task_invoked(gamma, sosw_manager.get_task_by_id(task_id))
            sosw_manager.mark_task_failed(task_id, attempt=1, error_type="Fatal")
        Scavenger(sosw_manager, topic_arn=topic_arn).run()
        return ids

    def recovery_reads():
        requests = Requests(sosw_manager.dynamo_db_client)
        Scavenger(sosw_manager, topic_arn=topic.arn).run()
        sosw_manager.dynamo_db_client.meta.events.unregister("provide-client-params.dynamodb", requests)
        return sorted(requests.on(closed))

    close_dead(2, topic.arn)
    (pending,) = close_dead(1, topic.arn + "-gone")
    few = recovery_reads()
    assert [m["task_id"] for m in topic.messages() if m["task_id"] == pending] == [pending]
    # When many more dead tasks pile up, and a notification is left pending again
    close_dead(40, topic.arn)
    close_dead(1, topic.arn + "-gone")
    many = recovery_reads()
    # Then recovering it reads the closed table exactly as much as before: its own row, no index query
    assert many == few
    assert ("BatchGetItem", closed, "") in few and ("UpdateItem", closed, "") in few
    assert not [c for c in many if c[0] == "Query"]
