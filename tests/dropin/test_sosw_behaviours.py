"""sosw's behaviours that its users' code and tests rely on beyond the seed methods, each as sosw 0.7.51 does
(run side by side where sosw can be: ``run_both``), or declared in ``docs/sosw-differences.md`` and asserted.

Written the way sosw's own tests are: rows put straight into tables made from sosw's definitions, clients
replaced with ``MagicMock``, labourers built in the test.
"""

from __future__ import annotations

import ast
import datetime
import json
import math
import time
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock, patch

import boto3
import pytest
from moto import mock_aws

from sosw.app import Processor
from sosw.clock import ManualClock
from sosw.errors import InvalidInputError
from sosw.managers.task import TaskManager
from sosw.orchestrator import Orchestrator
from sosw.scavenger import Scavenger
from sosw.scheduler import Scheduler
from sosw.worker_assistant import WorkerAssistant
from tests.dropin import differential
from tests.dropin.differences import declared
from tests.dropin.differential import DELTA, Call, Differs, rows, run_both, seed

ROOT = Path(__file__).resolve().parents[2]


def queued(task_id: str, labourer_id: str, greenfield: int) -> dict[str, Any]:
    return differential.queued(task_id, labourer_id, greenfield, created_at=1_700_000_000)


# ------------------------------------------------------------------ sosw's readers, as sosw reads


@pytest.mark.integration
def test_queue_length_of_a_labourer_built_by_the_caller_is_sosws(pair):
    # Given a labourer the config does not list, with three queued tasks and one invoked (sosw's own test)
    sosw_config, ours_config = pair()
    invoked = {**queued("running", "x", int(time.time()) + DELTA), "attempts": 1}
    tasks = [queued(f"task-{i}", "x", i) for i in range(3)] + [invoked]
    x = {"$new_labourer": {"id": "x", "arn": "arn:aws:lambda:us-west-2:000000000000:function:x"}}
    # When both count its queue and read its ends
    calls = [
        Call("get_length_of_queue_for_labourer", [x]),
        Call("get_oldest_greenfield_for_labourer", [x]),
        Call("get_newest_greenfield_for_labourer", [x]),
    ]
    outcome = run_both(sosw_config, ours_config, calls, seed_rows={"tasks": tasks})
    # Then the answers are sosw's: 3, 0 and 2
    outcome.check_calls()
    assert [r["result"] for r in outcome.ours] == [3, 0, 2]


@pytest.mark.integration
def test_the_oldest_greenfield_is_read_up_to_the_call_not_the_registration(sosw_config):
    # Given labourers registered at 9,500 (sosw's own test), then tasks queued at greenfields 10,000-20,000
    clock = ManualClock(9_500)
    tm = TaskManager(sosw_config, clock=clock)
    tm.ecology_client = MagicMock(
        **{"get_labourer_status.return_value": 4, "get_labourer_average_duration.return_value": 0}
    )
    alpha = tm.register_labourers()[0]
    greenfields = [11_796, 10_400, 19_990, 15_000]
    seed(sosw_config, {"tasks": [queued(f"task-{i}", alpha.id, gf) for i, gf in enumerate(greenfields)]})
    clock.advance(30_000)
    # When the oldest and newest are read later, by the labourer registered then
    # Then they are the queued tasks' (sosw reads up to time.time() at the call)
    assert tm.get_oldest_greenfield_for_labourer(alpha) == min(greenfields)
    assert tm.get_newest_greenfield_for_labourer(alpha) == max(greenfields)
    assert tm.get_length_of_queue_for_labourer(alpha) == 4


# ------------------------------------------------------------------ bad input, side by side


@pytest.mark.integration
def test_delays_past_the_limit_or_not_finite_are_refused_where_sosw_writes_them(pair):
    # Given a queued task on both sides
    sosw_config, ours_config = pair()
    read = Call("get_task_by_id", ["q1"])
    too_long = Call(
        "move_task_to_retry_table",
        [{"$ref": [0]}, 10**12],
        expect=Differs(
            declared("delay-limit"),
            lambda s, o: "result" in s and o.get("exception") == "InvalidInputError" and "wanted_delay" in o["message"],
        ),
    )
    outcome = run_both(sosw_config, ours_config, [read, too_long], seed_rows={"tasks": [queued("q1", "l1", 1000)]})
    outcome.check_calls()
    # Then sosw put it to wait 31,000 years; ours wrote nothing
    assert outcome.sosw_rows["retry"]["q1"]["desired_launch_time"] > 10**12 and "q1" not in outcome.sosw_rows["tasks"]
    assert outcome.ours_rows["retry"] == {} and set(outcome.ours_rows["tasks"]) == {"q1"}


@pytest.mark.parametrize("delay", [10**12, math.inf, -math.inf, math.nan, -1])
def test_every_bad_delay_names_the_field_and_the_limit_and_writes_nothing(manager, config, delay):
    from tests.conftest import scan_all

    alpha = manager.register_labourers()[0]
    task = manager.create_task(alpha, payload={})
    with pytest.raises(InvalidInputError, match=r"wanted_delay.*max_delay_seconds|max_delay_seconds.*wanted_delay"):
        manager.move_task_to_retry_table(task, delay)
    with pytest.raises(InvalidInputError, match=r"delay.*max_delay_seconds"):
        manager.create_delayed_task(alpha, {"n": 1}, delay=delay)
    assert scan_all(config)["retry"] == [] and len(scan_all(config)["tasks"]) == 1, declared("delay-limit")


@pytest.mark.integration
def test_invoking_an_id_no_table_holds_is_refused_as_sosw_refuses_it(pair):
    sosw_config, ours_config = pair()
    calls = [
        Call(
            "invoke_task",
            [{"$labourer": "l1"}],
            {"task_id": "no-such-task"},
            expect=Differs(
                declared("invoke-unknown-id"),
                lambda s, o: (
                    s.get("exception") == "ValueError"
                    and s["message"].startswith("Task to invoke is invalid")
                    and o.get("exception") == "InvalidInputError"
                    and "task_id" in o["message"]
                ),
            ),
        ),
        Call("invocations", target="sosw"),
    ]
    outcome = run_both(sosw_config, ours_config, calls)
    outcome.check_calls()
    assert outcome.ours[1]["result"] == [] and outcome.sosw_rows == outcome.ours_rows


# ------------------------------------------------------------------ every role's get_db_field_name


def test_every_role_answers_get_db_field_name_as_its_task_manager():
    # Given a config that renames a field, as sosw's field_names does
    config = {"dynamo_db_config": {"field_names": {"greenfield": "gf"}}, "labourers": {"alpha": {}}}
    roles = [
        Orchestrator(custom_config={"task_config": config}),
        Scavenger(custom_config={"task_config": config}),
        WorkerAssistant(custom_config=config),
        Scheduler(custom_config={"task_config": config}),
    ]
    # Then every role, and the TaskManager, names it alike
    assert {role.get_db_field_name("greenfield") for role in roles} == {"gf"}
    assert {role.task_client.get_db_field_name("task_id") for role in roles} == {"task_id"}


# ------------------------------------------------------------------ sosw.app.Processor


def test_register_clients_builds_sosws_managers_and_boto3_clients():
    config = {"labourers": {"alpha": {}}}
    processor = Processor(custom_config={"init_clients": ["Task", "s3"], "task_config": config})
    assert isinstance(processor.task_client, TaskManager) and processor.task_client.get_labourer("alpha")
    assert processor.s3_client.meta.service_model.service_name == "s3"


def test_a_processor_subclass_gets_its_default_the_functions_and_its_custom_config_merged():
    class Mine(Processor):
        DEFAULT_CONFIG = {"a": {"x": 1, "y": 1}, "b": 1}

    with patch("sosw.app.get_config", return_value={"a": {"y": 2}, "c": 3}):
        mine = Mine(custom_config={"b": 2})
    assert mine.config == {"a": {"x": 1, "y": 2}, "b": 2, "c": 3}
    mine({})
    assert mine.get_stats() == {"processor_calls": 1}


def test_die_publishes_to_the_configured_topic_then_exits():
    with mock_aws():
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        topic = sns.create_topic(Name="errors")["TopicArn"]
        queue = sqs.create_queue(QueueName="errors-q")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        # Given one processor without a topic configured, one with
        with pytest.raises(SystemExit):
            Processor(custom_config={}).die("quiet")
        with pytest.raises(SystemExit):
            Processor(custom_config={"dead_sns_topic": topic}).die("it broke")
        # Then only the configured one published
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    assert [json.loads(m["Body"])["Message"] for m in messages] == ["it broke"], declared("die-topic")


# ------------------------------------------------------------------ sosw.scheduler


@pytest.mark.integration
def test_sosws_scheduler_built_from_custom_config_makes_the_jobs_tasks(sosw_config):
    # Given sosw's Scheduler, built sosw's way, and sosw's job event
    schema = {"chunkable_attrs": [["section", {}], ["store", {}]]}
    scheduler = Scheduler(custom_config={"task_config": sosw_config, "job_schema": schema})
    job = {"lambda_name": "arn:aws:lambda:us-west-2:000000000000:function:alpha", "period": "last_2_days"}
    event = {"job": {**job, "isolate_days": True, "sections": {"s1": {"isolate_stores": True, "stores": ["a", "b"]}}}}
    assert scheduler.extract_job_from_payload(json.dumps(event))["lambda_name"] == "alpha"
    # When it is called with the event
    assert scheduler(event) is None
    # Then the job's tasks are queued, one a day and store
    payloads = [json.loads(t["payload"]) for t in rows(sosw_config)["tasks"].values()]
    days = scheduler.last_x_days("last_2_days")
    assert days == [str(datetime.date.today() - datetime.timedelta(days=n)) for n in (2, 1)]
    assert sorted((p["date_list"], p["stores"]) for p in payloads) == [([d], [s]) for d in days for s in "ab"]
    assert scheduler.last_report["total"] == 4 and scheduler.today() == [str(datetime.date.today())]


# ------------------------------------------------------------------ the facade stays a facade


def test_every_task_manager_method_is_one_delegating_statement():
    # Given the TaskManager's class body
    tree = ast.parse((ROOT / "shared" / "sosw" / "managers" / "task.py").read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TaskManager"]
    methods = [n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name != "__init__"]
    assert len(methods) > 40
    bad = []
    for method in methods:
        body = method.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]  # the docstring
        # Then each is one statement: a return of a call or an attribute, or one assignment to a step's attribute
        (statement,) = body if len(body) == 1 else (None,)
        one_call = isinstance(statement, ast.Return) and isinstance(statement.value, (ast.Call, ast.Attribute))
        one_call = one_call or (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call))
        one_set = isinstance(statement, ast.Assign) and all(isinstance(t, ast.Attribute) for t in statement.targets)
        if not (one_call or one_set):
            bad.append(method.name)
    assert bad == [], "TaskManager methods must delegate in one statement; move the logic to a step module"
