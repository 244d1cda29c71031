"""The local stack's reader of the tasks table's stream (Lambda's event source mapping, emulated), on DynamoDB Local."""

from __future__ import annotations

import os
import time

import pytest

from sosw import aws
from sosw.clock import SystemClock
from sosw.local.streams import StreamMapping, StreamPoller
from sosw.local.tables import prefixed_config
from sosw.managers.ecology import EcologyManager
from sosw.managers.task import TaskManager
from sosw.schema import table_schemas

pytestmark = pytest.mark.integration


@pytest.fixture
def streamed(dynamodb_local, lambda_endpoint, monkeypatch):
    """Fresh tables, the tasks table with its stream (as the stack creates it), and a TaskManager on them."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local.endpoint_url)
    config = prefixed_config(f"s{os.getpid()}_{time.monotonic_ns()}_", {"labourers": {"alpha": {}}})
    client = aws.dynamodb_client()
    schemas = table_schemas(config)
    for role, schema in schemas.items():
        kwargs = schema.create_table_kwargs()
        if role == "tasks":
            kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
        client.create_table(**kwargs)
    tm = TaskManager(config, clock=SystemClock(), ecology_client=EcologyManager(config))
    return tm, schemas["tasks"].name


def relayed_task_ids(endpoint) -> list[str]:
    return [
        record["dynamodb"]["NewImage"]["task_id"]["S"]
        for call in endpoint.invocations
        for record in call.event.get("Records", [])
    ]


def wait_for(done, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(0.05)
    return False


def test_new_tasks_reach_the_function_after_a_transaction_checked_the_tasks_table(streamed, lambda_endpoint):
    # Given a poller reading the tasks table's stream, and a delayed task: its creation is a transaction with a
    # ConditionCheck on the tasks table, to which DynamoDB Local gives a stream sequence number but no record
    tm, table = streamed
    poller = StreamPoller(StreamMapping(table, "sosw_orchestrator"), aws.dynamodb_client().meta.endpoint_url).start()
    try:
        time.sleep(0.5)  # the poller has read the empty shard: its iterator now points at that sequence number
        tm.create_delayed_task(tm.get_labourer("alpha"), {"n": 0}, 60)
        time.sleep(0.5)

        # When tasks are created afterwards
        first = tm.create_task(tm.get_labourer("alpha"), n=1)["task_id"]
        second = tm.create_task(tm.get_labourer("alpha"), n=2)["task_id"]

        # Then their INSERTs still reach the function, once each, and only theirs (the delayed task is elsewhere)
        assert wait_for(lambda: len(relayed_task_ids(lambda_endpoint)) >= 2), lambda_endpoint.invocations
        time.sleep(0.6)
        assert sorted(relayed_task_ids(lambda_endpoint)) == sorted([first, second])
    finally:
        poller.stop()


def test_records_written_before_the_poller_started_are_not_delivered(streamed, lambda_endpoint):
    tm, table = streamed
    tm.create_task(tm.get_labourer("alpha"), n=0)
    poller = StreamPoller(StreamMapping(table, "sosw_orchestrator"), aws.dynamodb_client().meta.endpoint_url).start()
    try:
        time.sleep(0.5)
        tm.create_delayed_task(tm.get_labourer("alpha"), {"n": 1}, 60)
        time.sleep(0.5)
        task_id = tm.create_task(tm.get_labourer("alpha"), n=2)["task_id"]
        assert wait_for(lambda: len(relayed_task_ids(lambda_endpoint)) >= 1)
        time.sleep(0.6)
        assert relayed_task_ids(lambda_endpoint) == [task_id]
    finally:
        poller.stop()
