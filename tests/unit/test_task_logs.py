"""``sosw show TASK_ID --logs`` on AWS: one Logs Insights query per attempt, on the worker's log group.

moto runs the queries: it evaluates their time windows and sort, not their ``filter``. So the events
below are placed where the windows alone separate the attempts, and each query's text and window are
asserted exactly.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from sosw.console.logs import CloudWatchLogs, LocalLogs, insights_query, task_logs

NOW = float(int(time.time()))  # moto, like CloudWatch, refuses events far from the real time
DELTA = 31_557_600
CONFIG = {"greenfield_invocation_delta": DELTA, "labourers": {"greeter": {"arn": "dev_greeter"}}}
TASK_ID = "8f3c0d1e2b4a49c6a7d5e3f1b2c4d6e8"


def closed_task(created: float, invoked: float, closed: float, attempts: int = 2) -> dict:
    """A task completed on its last attempt, claimed at ``invoked``, as the closed table keeps it."""
    return {
        "task_id": TASK_ID,
        "labourer_id": "greeter",
        "attempts": attempts,
        "created_at": created,
        "greenfield": invoked + DELTA,
        "completed_at": closed,
        "closed_at": closed,
        "labourer_id_task_status": "greeter_1",
    }


def line(at: float, message: str, attempt: int, task_id: str = TASK_ID, **extra) -> dict:
    record = {"level": "INFO", "message": message, "task_id": task_id, "attempt": attempt, **extra}
    return {"timestamp": int(at * 1000), "message": json.dumps(record)}


@pytest.fixture
def aws():
    with mock_aws():
        iam = boto3.client("iam")
        role = iam.create_role(RoleName="worker", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("app.py", "def handler(event, context):\n    return event\n")
        boto3.client("lambda").create_function(
            FunctionName="dev_greeter",
            Runtime="python3.12",
            Role=role,
            Handler="app.handler",
            Code={"ZipFile": code.getvalue()},
        )
        yield boto3.client("logs")


def _queries(logs) -> list[dict]:
    started = []
    logs.meta.events.register("provide-client-params.logs.StartQuery", lambda params, **_: started.append(params))
    return started


def test_one_query_per_attempt_over_its_window_on_the_functions_log_group(aws):
    # Given a task created 600 s ago, retried, its second attempt claimed 300 s ago and completed 70 s later
    created, invoked, closed = NOW - 600, NOW - 300, NOW - 230
    task = closed_task(created, invoked, closed)
    group = "/aws/lambda/dev_greeter"  # Lambda's default group (moto keeps no LoggingConfig)
    aws.create_log_group(logGroupName=group)
    aws.put_retention_policy(logGroupName=group, retentionInDays=30)
    aws.create_log_stream(logGroupName=group, logStreamName="2026/11/30/[$LATEST]a")
    events = [
        line(NOW - 90_000, "a line of the day before", 1),  # outside every window
        line(NOW - 500, "Task failed", 1, level="ERROR", exception_name="ConnectionError"),
        line(NOW - 235, "greeting Ada", 2),  # the worker's own line (its delivery started late)
        line(NOW - 234, "Task completed", 2),
    ]
    aws.put_log_events(logGroupName=group, logStreamName="2026/11/30/[$LATEST]a", logEvents=events)
    started = _queries(aws)
    # When its logs are asked for
    source = CloudWatchLogs(aws, boto3.client("lambda"), now=lambda: NOW, sleep=lambda s: None)
    state, attempts = task_logs("closed", task, CONFIG, source, now=NOW)
    # Then one query ran per attempt, with the exact filter and window: the earlier attempt from the
    # task's creation to the last claim, the last one from its claim to its closing (a minute's slack each)
    assert [q["queryString"] for q in started] == [insights_query(TASK_ID, 1), insights_query(TASK_ID, 2)]
    assert insights_query(TASK_ID, 2) == (
        "fields @timestamp, @message\n"
        f'| filter task_id = "{TASK_ID}" and attempt = 2\n'
        "| sort @timestamp asc\n"
        "| limit 10000"
    )
    assert [(q["logGroupName"], q["startTime"], q["endTime"]) for q in started] == [
        (group, int(created - 60), int(invoked + 60) + 1),
        (group, int(invoked - 60), int(closed + 60) + 1),
    ]
    # and moto evaluated the windows: each attempt has its own lines, in order, the old one left out
    assert [[ln.message for ln in a.lines] for a in attempts] == [["Task failed"], ["greeting Ada", "Task completed"]]
    assert state == "completed"
    assert [a.outcome for a in attempts] == ["failed (ConnectionError)", "completed"]
    assert attempts[1].lines[0].record["task_id"] == TASK_ID


def test_expired_logs_are_said_so_without_a_query(aws):
    # Given a log group that keeps a day, and a task whose only attempt ended three days ago
    group = "/aws/lambda/dev_greeter"
    aws.create_log_group(logGroupName=group)
    aws.put_retention_policy(logGroupName=group, retentionInDays=1)
    task = closed_task(NOW - 3 * 86400 - 100, NOW - 3 * 86400 - 90, NOW - 3 * 86400 - 80, attempts=1)
    started = _queries(aws)
    source = CloudWatchLogs(aws, boto3.client("lambda"), now=lambda: NOW)
    _state, [attempt] = task_logs("closed", task, CONFIG, source, now=NOW)
    assert started == [] and attempt.lines == []
    assert attempt.note.startswith(f"its logs have expired: log group {group} keeps 1 days")


def test_a_missing_log_group_is_said_so(aws):
    task = closed_task(NOW - 100, NOW - 90, NOW - 80, attempts=1)
    source = CloudWatchLogs(aws, boto3.client("lambda"), now=lambda: NOW)
    _state, [attempt] = task_logs("closed", task, CONFIG, source, now=NOW)
    assert "log group does not exist" in attempt.note


def test_the_log_group_is_the_one_lambda_names_in_its_logging_config(aws):
    # Given a function with advanced logging into the stack's own group (as infra/ configures them)
    group = "/sosw/dev/dev_greeter"
    aws.create_log_group(logGroupName=group)
    lambda_client = boto3.client("lambda")
    stubber = Stubber(lambda_client)
    stubber.add_response(
        "get_function_configuration",
        {"FunctionName": "dev_greeter", "LoggingConfig": {"LogFormat": "JSON", "LogGroup": group}},
        {"FunctionName": "dev_greeter"},
    )
    started = _queries(aws)
    with stubber:
        source = CloudWatchLogs(aws, lambda_client, now=lambda: NOW)
        task_logs("closed", closed_task(NOW - 100, NOW - 90, NOW - 80, attempts=1), CONFIG, source, now=NOW)
    assert [q["logGroupName"] for q in started] == [group]


def test_local_logs_come_from_the_functions_log_file(tmp_path):
    # Given the local endpoint's log file of the worker: JSON lines of two tasks, metrics, a traceback
    lines = [
        json.dumps({"level": "INFO", "message": "greeting Ada", "task_id": TASK_ID, "attempt": 1}),
        json.dumps({"level": "INFO", "message": "greeting Bob", "task_id": "another", "attempt": 1}),
        json.dumps({"_aws": {"CloudWatchMetrics": []}, "task_id": TASK_ID, "attempt": 1}),
        "Traceback (most recent call last):",
        json.dumps({"level": "INFO", "message": "Task completed", "task_id": TASK_ID, "attempt": 1}),
    ]
    (tmp_path / "dev_greeter.log").write_text("\n".join(lines) + "\n")
    task = closed_task(NOW - 100, NOW - 90, NOW - 80, attempts=1)
    state, [attempt] = task_logs("closed", task, CONFIG, LocalLogs(tmp_path), now=NOW)
    assert [ln.message for ln in attempt.lines] == ["greeting Ada", "Task completed"]
    assert state == attempt.outcome == "completed"


def test_a_failed_attempt_waiting_for_its_retry_says_why_it_failed(tmp_path):
    # Given a task whose first attempt raised, now in the retry table
    (tmp_path / "dev_greeter.log").write_text(
        json.dumps({"level": "ERROR", "message": "Task failed", "task_id": TASK_ID, "attempt": 1}) + "\n"
    )
    task = {
        **closed_task(NOW - 100, NOW - 90, NOW - 80, attempts=1),
        "last_error": {"type": "KeyError", "message": "'key'"},
        "desired_launch_time": NOW + 60,
    }
    for key in ("closed_at", "completed_at", "labourer_id_task_status"):
        del task[key]
    state, [attempt] = task_logs("waiting", task, CONFIG, LocalLogs(tmp_path), now=NOW)
    assert state.startswith("waiting for a retry (KeyError: 'key', due again at ")
    assert attempt.outcome == "failed (KeyError: 'key')" and [ln.level for ln in attempt.lines] == ["ERROR"]


def test_the_cli_on_aws_prints_each_attempt_with_its_lines(aws, tmp_path, capsys):
    # Given a deployed-like stack on moto: the tables, a worker function and its log group with the task's lines
    import jsonschema

    from sosw import aws as sosw_aws
    from sosw import cli
    from sosw.local.tables import create_tables, prefixed_config
    from sosw.managers.task import TaskManager

    config = prefixed_config("logs_", {"labourers": {"greeter": {"arn": "dev_greeter", "duration": 60}}})
    create_tables(sosw_aws.dynamodb_client(), config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    tm = TaskManager(config)
    greeter = tm.get_labourer("greeter")
    task = tm.create_task(greeter, payload={"name": "Ada"})
    tm.open_run_window()
    claimed = tm.mark_task_invoked(tm.get_labourer("greeter"), task)
    assert tm.complete_and_archive_task(claimed, attempt=1, result={"ok": True})
    group = "/aws/lambda/dev_greeter"
    aws.create_log_group(logGroupName=group)
    aws.create_log_stream(logGroupName=group, logStreamName="s")
    now = time.time()
    aws.put_log_events(
        logGroupName=group,
        logStreamName="s",
        logEvents=[line(now - 1, "greeting Ada", 1, task_id=task["task_id"])],
    )
    # When `sosw show ID --logs` runs against it, for people and as json
    assert cli.main(["--config", str(tmp_path / "config.json"), "show", task["task_id"], "--logs"]) == 0
    text = capsys.readouterr().out
    assert cli.main(["--config", str(tmp_path / "config.json"), "show", task["task_id"], "--logs", "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    # Then the attempt, its outcome and the worker's line are there, and the document keeps its schema
    assert f"task {task['task_id']} (greeter): completed, after 1 attempt" in text
    assert "attempt 1: completed" in text and "INFO    greeting Ada" in text
    assert f"lines from CloudWatch Logs Insights on {group}" in text
    schema = json.loads((Path(cli.__file__).parent / "console" / "schemas" / "show.schema.json").read_text())
    jsonschema.validate(doc, schema)
    assert doc["attempts"][0]["query"] == insights_query(task["task_id"], 1)
