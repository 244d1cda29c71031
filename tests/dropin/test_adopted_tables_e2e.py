"""End to end on adopted sosw tables: the stack synthesized with ``tables.adopt``, run from its template (real
handlers, local Lambda endpoint, moto's SNS), on tasks, retry and closed tables created exactly as sosw's
CloudFormation creates them (``sosw.schema``'s sosw definitions: INCLUDE closed-tasks index, provisioned).

Create, dispatch, completion, retry, dead with its notification, a Scavenger run recovering a notification
left pending (the topic was gone when the task died), then ``sosw dead`` and ``sosw redrive --error``.
"""

from __future__ import annotations

import json
import os
import time

import boto3
import pytest

from sosw import cli
from sosw.local.stack import LocalStack
from sosw.local.template import synthesize
from sosw.schema import table_schemas
from tests.conftest import scan_all

pytestmark = pytest.mark.integration

ADOPTED = ("tasks", "retry", "closed")


def adopt_context(prefix: str) -> dict:
    return {
        "stage": "adopt",
        "prefix": prefix,
        "nag": False,
        "dashboard": False,
        "tables": {"adopt": list(ADOPTED)},
        "workers": {
            # Generous times: a loaded machine's cold starts must not turn a planned success into a retry
            "legacy": {
                "code": "lambdas/worker",
                "timeout": 20,
                "max_simultaneous_invocations": 4,
                "duration": 20,
                "cooldown": 60,
                "max_attempts": 3,
                "retry_policy": "exponential",
                "retry_base": 1,
                "retry_cap": 2,
            }
        },
    }


def test_a_stack_on_adopted_sosw_tables_runs_the_whole_lifecycle(dynamodb_local, tmp_path, monkeypatch, capsys):
    # Given the stack synthesized to adopt the tasks, retry and closed tables, and those tables made by sosw's
    # definitions (the template creates only the stack's own tables)
    prefix = f"ad{os.getpid()}_"
    stack = LocalStack.from_template(
        synthesize(tmp_path / "cdk.out", adopt_context(prefix)),
        dynamodb_endpoint=dynamodb_local.endpoint_url,
        log_dir=tmp_path / "logs",
    )
    created = {t["TableName"] for t in stack.spec.tables}
    sosw_tables = table_schemas(stack.config, sosw_definitions=True)
    assert created == {sosw_tables[r].name for r in ("meta", "leases", "jobs")}  # the stack's own
    stack.spec.tables += [sosw_tables[role].create_table_kwargs() for role in ADOPTED]
    closed_index = sosw_tables["closed"].create_table_kwargs()["GlobalSecondaryIndexes"][0]
    assert closed_index["Projection"]["ProjectionType"] == "INCLUDE"
    with stack:
        tm = stack.task_manager()
        legacy = tm.get_labourer("legacy")
        ok = tm.create_task(legacy, payload={"sleep": 0.1, "echo": "ok"})["task_id"]
        retried = tm.create_task(legacy, payload={"sleep": 0.1, "fail_attempts": 1})["task_id"]
        dead = [tm.create_task(legacy, payload={"always_fail": True})["task_id"] for _ in range(2)]
        # And the dead-task topic gone for now: the notifications can't be published when the tasks die
        sns = boto3.client("sns")
        sns.delete_topic(TopicArn=stack.topic_arn)

        # When the schedules run until no task is open or waiting
        tables = drive(stack)

        # Then the tasks ended as their payloads say, on sosw's tables
        status = {t["task_id"]: t for t in tables["closed"]}
        assert set(status) == {ok, retried, *dead} and not tables["tasks"] and not tables["retry"]
        assert status[ok]["labourer_id_task_status"] == "legacy_1"
        assert status[ok]["result_echo"] == "ok" and status[ok]["result"]["echo"] == "ok"  # sosw's and ours
        assert status[retried]["labourer_id_task_status"] == "legacy_1" and status[retried]["attempts"] >= 2
        assert status[retried]["failed_attempts"] >= 1  # sosw's counter
        for task_id in dead:
            assert status[task_id]["labourer_id_task_status"] == "legacy_0" and status[task_id]["attempts"] == 3
            assert status[task_id]["last_error"]["type"] == "RuntimeError" and status[task_id]["notify_pending"]
        assert stack.dead_letters() == []

        # When the topic is back and the Scavenger runs again
        topic = sns.create_topic(Name=stack.spec.topics[next(iter(stack.spec.topics))])["TopicArn"]
        assert topic == stack.topic_arn
        queue = boto3.client("sqs").get_queue_attributes(
            QueueUrl=stack.dead_letters_queue["QueueUrl"], AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue)
        stack.run_scavenger()
        stack.run_scavenger()

        # Then each pending notification is published, once
        assert sorted(m["task_id"] for m in stack.dead_letters()) == sorted(dead)
        assert not any("notify_pending" in t for t in scan_all(stack.config)["closed"])

        # When an operator lists the dead tasks and redrives them by error type, with the CLI
        monkeypatch.chdir(tmp_path)
        state = tmp_path / cli.STATE_FILE
        state.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        state.write_text(json.dumps({"config": stack.config, "env": env}))
        cancelled = tm.create_task(legacy, payload={"never": "run"})["task_id"]
        assert cli.main(["--local", "cancel", cancelled]) == 0
        capsys.readouterr()
        assert cli.main(["--local", "dead", "--labourer", "legacy"]) == 0
        listed = capsys.readouterr().out
        assert all(task_id in listed for task_id in (*dead, cancelled)) and "RuntimeError" in listed
        assert cli.main(["--local", "dead", "--error", "Cancelled", "--output", "jsonl"]) == 0
        assert [json.loads(line)["task_id"] for line in capsys.readouterr().out.splitlines()] == [cancelled]
        assert cli.main(["--local", "redrive", "--labourer", "legacy", "--error", "RuntimeError"]) == 0
        assert capsys.readouterr().out.strip() == "redrove 2 of 2 dead task(s)"

        # Then the two are queued again, and the cancelled one is still dead
        tables = scan_all(stack.config)
        assert sorted(t["task_id"] for t in tables["tasks"]) == sorted(dead)
        assert [t["task_id"] for t in tables["closed"] if t["labourer_id_task_status"] == "legacy_0"] == [cancelled]


def drive(stack: LocalStack, rounds: int = 120) -> dict:
    for _ in range(rounds):
        stack.run_orchestrator()
        stack.lambda_.wait_idle(15)
        stack.run_scavenger()
        tables = scan_all(stack.config)
        if not tables["tasks"] and not tables["retry"]:
            return tables
        time.sleep(0.3)
    raise AssertionError(f"tasks still open: {tables['tasks']} {tables['retry']}")
