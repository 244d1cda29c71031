"""sosw's processor style (point 8): ``X(custom_config)`` then ``x(event)``, as sosw users' own Lambdas do."""

from __future__ import annotations

import json
from unittest.mock import MagicMock, patch

import boto3
import pytest
from moto import mock_aws

from sosw.app import LambdaGlobals, get_lambda_handler
from sosw.errors import InvalidInputError
from sosw.managers.task import TaskManager
from sosw.orchestrator import Orchestrator
from sosw.scavenger import Scavenger
from sosw.worker_assistant import WorkerAssistant
from tests.conftest import scan_all
from tests.dropin.differences import declared


def test_orchestrator_and_scavenger_built_from_custom_config_run_when_called(config, lambda_endpoint):
    # Given sosw's processor configs: the TaskManager config under task_config
    tm = TaskManager(config)
    alpha = tm.get_labourer("alpha")
    task = tm.create_task(alpha, payload={"n": 1})
    orchestrator = Orchestrator({"task_config": config, "init_clients": ["Task"]})
    # When the Orchestrator is called with the event, as sosw's Lambda handler does
    assert orchestrator({"source": "aws.events"}) is None
    # Then the task was claimed and invoked
    assert [i.event["task_id"] for i in lambda_endpoint.invocations] == [task["task_id"]]
    assert orchestrator.task_client.get_task_by_id(task["task_id"])["attempts"] == 1
    # And the worker reports through sosw's WorkerAssistant calls, then the Scavenger archives
    assistant = WorkerAssistant(custom_config={"dynamo_db_config": config["dynamo_db_config"]})
    assistant.mark_task_as_completed(task["task_id"], stats={"rows": 3}, result={"ok": True})
    scavenger = Scavenger({"task_config": config, "sns_config": {"recipient": "arn:aws:sns:x"}})
    assert scavenger.topic_arn == "arn:aws:sns:x"
    assert scavenger({}) is None
    (closed,) = scan_all(config)["closed"]
    assert closed["task_id"] == task["task_id"] and closed["result_ok"] is True and closed["stat_rows"] == 3


def test_the_worker_assistant_takes_sosws_events(config):
    tm = TaskManager(config)
    alpha = tm.register_labourers()[0]
    first, second = (tm.create_task(alpha, payload={"n": i}) for i in range(2))
    for task in (first, second):
        tm.mark_task_invoked(alpha, task)
    assistant = WorkerAssistant({"dynamo_db_config": config["dynamo_db_config"]})
    # sosw accepts the plural ``actions`` with one action, and stats / result as JSON text; returns None
    assert assistant({"actions": ["mark_task_as_failed"], "task_id": first["task_id"], "result": '{"e": 1}'}) is None
    assistant.mark_task_as_failed(second["task_id"], stats={"s": 1})
    rows = {t["task_id"]: t for t in scan_all(config)["tasks"]}
    assert rows[first["task_id"]]["result_e"] == 1 and rows[first["task_id"]]["failed_attempts"] == 1
    assert rows[second["task_id"]]["stat_s"] == 1 and "failed_at" in rows[second["task_id"]]
    with pytest.raises(InvalidInputError, match="action"):  # declared("assistant-bad-input")
        assistant({"action": "drop_everything", "task_id": "x"})
    with pytest.raises(InvalidInputError, match="result"):
        assistant({"action": "mark_task_as_failed", "task_id": first["task_id"], "result": "{not json"})
    assert declared("assistant-bad-input")


def test_clients_of_the_processors_can_be_replaced(config):
    scavenger = Scavenger({"task_config": config})
    scavenger.task_client = MagicMock(**{"open_run_window.return_value": []})
    scavenger.sns_client = sns = MagicMock()
    scavenger()
    scavenger.task_client.open_run_window.assert_called_once_with()
    assert scavenger.sns_client is sns
    orchestrator = Orchestrator({"task_config": config})
    orchestrator.task_client = replacement = TaskManager(config)
    assert orchestrator.tm is replacement


def test_get_lambda_handler_builds_the_processor_once_and_honours_a_patched_get_config(config, lambda_endpoint):
    # Given sosw users' Lambda module, and a test that patches sosw.app.get_config as sosw's tests do
    global_vars = LambdaGlobals()
    handler = get_lambda_handler(Orchestrator, global_vars)
    tm = TaskManager(config)
    task = tm.create_task(tm.get_labourer("alpha"), payload={})
    with patch("sosw.app.get_config", return_value={"task_config": config}):
        # When the handler is called twice
        assert handler({}, object()) is None
        processor = global_vars.processor
        assert handler({}, object()) is None
    # Then one processor served both, on the patched config
    assert global_vars.processor is processor and processor.tm.tasks_table == config["dynamo_db_config"]["table_name"]
    assert [i.event["task_id"] for i in lambda_endpoint.invocations] == [task["task_id"]]


def test_a_processors_config_is_the_stacks_ssm_config_under_its_custom_config(monkeypatch):
    # Given the stack's config in its SSM parameter, and a sosw Lambda's partial custom_config
    with mock_aws():
        stack_config = {"labourers": {"alpha": {"max_attempts": 4}}, "greenfield_task_step": 500}
        boto3.client("ssm").put_parameter(Name="/sosw/t/config", Type="String", Value=json.dumps(stack_config))
        monkeypatch.setenv("SOSW_CONFIG_PARAMETER", "/sosw/t/config")
        # When the Orchestrator is built sosw's way
        orchestrator = Orchestrator(custom_config={"task_config": {"greenfield_task_step": 100}})
    # Then its TaskManager has the stack's labourers, with the custom value winning
    tm = orchestrator.task_client
    assert tm.get_labourer("alpha").max_attempts == 4 and tm.config["greenfield_task_step"] == 100, declared(
        "config-from-ssm"
    )
    # And sosw's counters are there, its TaskManager's merged in; a reset keeps their totals (as sosw 0.7.51 does)
    assert orchestrator.get_stats(recursive=False) == {}
    tm.stats["invoked_tasks"] += 1
    assert orchestrator.get_stats() == {"invoked_tasks": 1} == orchestrator.get_stats(recursive=False)
    orchestrator.reset_stats()
    assert orchestrator.get_stats() == {"total_invoked_tasks": 1} and dict(tm.stats) == {"total_invoked_tasks": 1}
    tm.stats["invoked_tasks"] += 2
    assert orchestrator.get_stats() == {"total_invoked_tasks": 1, "invoked_tasks": 2}
