"""What wakes dispatch in the deployed stack: the tasks table's stream on the Orchestrator, and its settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.dispatch import STREAM_BATCH_SIZE
from sosw.local.template import load
from tests.infra.conftest import Synth, cdk_context, synthesize


def test_new_and_waiting_tasks_reach_the_orchestrator_through_their_tables_streams(dev: Synth):
    # Given the dev stack: its tasks and retry tables have streams of new images, and no other table has one
    tables = dev.of_type("AWS::DynamoDB::Table")
    streamed = {
        t["Properties"]["TableName"]: t["Properties"]["StreamSpecification"]
        for t in tables.values()
        if "StreamSpecification" in t["Properties"]
    }
    assert streamed == {name: {"StreamViewType": "NEW_IMAGE"} for name in ("dev_sosw_tasks", "dev_sosw_retry_tasks")}
    # Then one mapping each passes only INSERT records to the Orchestrator, at once, never retried
    orchestrator_id, _ = dev.function("dev_sosw_orchestrator")
    sources = set()
    for mapping in dev.of_type("AWS::Lambda::EventSourceMapping").values():
        props = mapping["Properties"]
        assert props["FunctionName"] == {"Ref": orchestrator_id}
        sources.add(props["EventSourceArn"]["Fn::GetAtt"][0])
        assert props["EventSourceArn"]["Fn::GetAtt"][1] == "StreamArn"
        assert props["StartingPosition"] == "LATEST" and props["BatchSize"] == STREAM_BATCH_SIZE == 100
        assert props["MaximumBatchingWindowInSeconds"] == 0 and props["MaximumRetryAttempts"] == 0
        assert props["FilterCriteria"] == {"Filters": [{"Pattern": '{"eventName":["INSERT"]}'}]}
    assert sources == {dev.table(name)[0] for name in ("dev_sosw_tasks", "dev_sosw_retry_tasks")}


def test_the_orchestrator_runs_long_enough_to_follow_the_work_and_wake_ups_know_where_to_go(dev: Synth):
    _, orchestrator = dev.function("dev_sosw_orchestrator")
    assert orchestrator["Timeout"] == 300
    env = orchestrator["Environment"]["Variables"]
    assert env["SOSW_ORCHESTRATOR_FUNCTION"] == "dev_sosw_orchestrator"
    for name in ("dev_sosw_worker_assistant", "dev_sosw_failure_handler"):
        env = dev.function(name)[1]["Environment"]["Variables"]
        assert env["SOSW_ORCHESTRATOR_FUNCTION"] == "dev_sosw_orchestrator"
        assert env["SOSW_SCAVENGER_FUNCTION"] == "dev_sosw_scavenger"


def test_listing_streams_is_the_one_unscoped_grant_and_it_is_acknowledged(dev: Synth):
    policies = [
        p
        for p in dev.of_type("AWS::IAM::Policy").values()
        if any(s.get("Sid") == "ListStreams" for s in p["Properties"]["PolicyDocument"]["Statement"])
    ]
    [policy] = policies
    [statement] = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Action"] == "dynamodb:ListStreams" and statement["Resource"] == "*"


def test_the_local_stack_reads_the_same_mapping_from_the_template(dev: Synth):
    spec = load(Path(dev.app.outdir))
    assert sorted((s.table, s.function) for s in spec.streams) == [
        ("dev_sosw_retry_tasks", "dev_sosw_orchestrator"),
        ("dev_sosw_tasks", "dev_sosw_orchestrator"),
    ]
    assert all(s.batch_size == 100 and s.event_names == ("INSERT",) for s in spec.streams)
    for name in ("dev_sosw_tasks", "dev_sosw_retry_tasks"):
        [table] = [t for t in spec.tables if t["TableName"] == name]
        assert table["StreamSpecification"]["StreamViewType"] == "NEW_IMAGE"


@pytest.fixture(scope="module")
def adopted(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(Path(tmp_path_factory.mktemp("adopted")), cdk_context(prefix="", tables={"adopt": ["tasks"]}))


def test_adopted_tables_have_no_stream_so_reports_and_the_schedule_wake_dispatch(adopted: Synth):
    # Given only the tasks table adopted: the retry table the stack created still wakes dispatch
    [mapping] = adopted.of_type("AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"]["EventSourceArn"]["Fn::GetAtt"][0] == adopted.table("sosw_retry_tasks")[0]


def test_wake_ups_falling_behind_raise_an_alarm(dev: Synth, adopted: Synth):
    # Given the dev stack: an alarm on the age of the oldest stream record the Orchestrator got
    [alarm] = [
        a["Properties"]
        for a in dev.of_type("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["AlarmName"] == "sosw-dev-dispatch-lagging"
    ]
    orchestrator_id, _ = dev.function("dev_sosw_orchestrator")
    assert alarm["MetricName"] == "IteratorAge" and alarm["Namespace"] == "AWS/Lambda"
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": orchestrator_id}}]
    assert alarm["Statistic"] == "Maximum" and alarm["Threshold"] == 60_000  # ms: by then the schedule is faster
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] and alarm["OKActions"]
    # And a stack whose tables all come adopted (no stream) has none
    none_streamed = synthesize(
        Path(adopted.app.outdir).parent / "all-adopted",
        cdk_context(prefix="", tables={"adopt": ["tasks", "retry", "closed"]}),
    )
    assert not none_streamed.of_type("AWS::Lambda::EventSourceMapping")
    names = {a["Properties"]["AlarmName"] for a in none_streamed.of_type("AWS::CloudWatch::Alarm").values()}
    assert "sosw-dev-dispatch-lagging" not in names and "sosw-dev-orchestrator-errors" in names
