"""Least privilege: each role's statements, exactly; wildcards only where AWS offers nothing narrower."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.conftest import LEGACY_ARN, Synth, as_list

XRAY = {"Action": ["xray:PutTelemetryRecords", "xray:PutTraceSegments"], "Effect": "Allow", "Resource": "*"}
#: Actions AWS grants on no narrower resource than "*".
NO_RESOURCE_LEVEL = {
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "cloudwatch:GetMetricStatistics",
    "dynamodb:ListStreams",
}


def _parameter_arn(name: str) -> dict[str, Any]:
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":ssm:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                f":parameter{name}",
            ],
        ]
    }


def _log_group_arn(synth: Synth, function_name: str) -> dict[str, Any]:
    for logical_id, group in synth.of_type("AWS::Logs::LogGroup").items():
        if group["Properties"]["LogGroupName"] == f"/sosw/{synth.config.stage}/{function_name}":
            return {"Fn::GetAtt": [logical_id, "Arn"]}
    raise AssertionError(function_name)


def _control(synth: Synth, function_name: str) -> dict[str, dict[str, Any]]:
    """What every control function has: its logs, its config, its failed events."""
    return {
        "WriteOwnLogs": {
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [_log_group_arn(synth, function_name)],
        },
        "ReadConfig": {
            "Action": ["ssm:GetParameter"],
            "Resource": [_parameter_arn(synth.config.config_parameter_name)],
        },
        "SendFailedEvents": {"Action": ["sqs:SendMessage"], "Resource": [_queue(synth)]},
    }


def _queue(synth: Synth) -> dict[str, Any]:
    return {"Fn::GetAtt": [synth.logical_id("AWS::SQS::Queue"), "Arn"]}


def _dead_topic(synth: Synth) -> dict[str, Any]:
    for logical_id, topic in synth.of_type("AWS::SNS::Topic").items():
        if "dead" in topic["Properties"]["DisplayName"]:
            return {"Ref": logical_id}
    raise AssertionError("no dead-task topic")


def _messaging_key(synth: Synth) -> dict[str, Any]:
    for logical_id, key in synth.of_type("AWS::KMS::Key").items():
        if "topics" in key["Properties"]["Description"]:
            return {"Fn::GetAtt": [logical_id, "Arn"]}
    raise AssertionError("no topic key")


def _named_function(name: str) -> dict[str, Any]:
    """A control function's ARN built from its name (grants between control functions, and to itself)."""
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":lambda:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                f":function:{name}",
            ],
        ]
    }


def _stream(synth: Synth, table_name: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [synth.table(table_name)[0], "StreamArn"]}


def test_orchestrator_may_claim_lease_requeue_invoke_the_workers_and_read_health_nothing_more(dev: Synth):
    worker = dev.function_arn("dev_example_worker")
    expected = {
        **_control(dev, "dev_sosw_orchestrator"),
        "OpenTasks": {
            "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
            "Resource": [dev.table_arn("dev_sosw_tasks"), dev.index_arn("dev_sosw_tasks", "sosw_tasks_greenfield")],
        },
        "RetryTasks": {
            "Action": ["dynamodb:DeleteItem", "dynamodb:Query"],
            "Resource": [
                dev.table_arn("dev_sosw_retry_tasks"),
                dev.index_arn("dev_sosw_retry_tasks", "labourer_id_greenfield"),
            ],
        },
        "ClosedTasksIndex": {
            "Action": ["dynamodb:Query"],
            "Resource": [dev.index_arn("dev_sosw_closed_tasks", "labourer_task_status_with_time")],
        },
        "Leases": {
            "Action": [
                "dynamodb:BatchGetItem",
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
            ],
            "Resource": [dev.table_arn("dev_sosw_orchestrator_leases")],
        },
        "WakeDispatch": {"Action": ["lambda:InvokeFunction"], "Resource": [_named_function("dev_sosw_orchestrator")]},
        "DispatchStreams": {
            "Action": ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
            "Resource": [_stream(dev, "dev_sosw_retry_tasks"), _stream(dev, "dev_sosw_tasks")],
        },
        # Lambda's reading of the stream needs it; it supports no resource-level permissions
        "ListStreams": {"Action": ["dynamodb:ListStreams"], "Resource": ["*"]},
        "InvokeWorkers": {"Action": ["lambda:InvokeFunction"], "Resource": [worker]},
        "ReadWorkerTimeouts": {"Action": ["lambda:GetFunctionConfiguration"], "Resource": [worker]},
    }
    assert dev.statements_by_sid("dev_sosw_orchestrator") == expected


def test_health_metrics_are_readable_only_when_a_labourer_declares_them(dev: Synth, prod: Synth):
    # Given no labourer of dev declares health metrics, and prod's 'resize' does
    assert "HealthMetrics" not in dev.statements_by_sid("dev_sosw_orchestrator")
    # Then only prod's Orchestrator may read CloudWatch statistics, the one action without resource-level permissions
    assert prod.statements_by_sid("prod_sosw_orchestrator")["HealthMetrics"] == {
        "Action": ["cloudwatch:GetMetricStatistics"],
        "Resource": ["*"],
    }


def test_scavenger_moves_tasks_and_publishes_dead_ones_and_wakes_only_the_orchestrator(dev: Synth):
    expected = {
        **_control(dev, "dev_sosw_scavenger"),
        "OpenTasks": {
            "Action": [
                "dynamodb:ConditionCheckItem",
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
            ],
            "Resource": [dev.table_arn("dev_sosw_tasks"), dev.index_arn("dev_sosw_tasks", "sosw_tasks_greenfield")],
        },
        "RetryTasks": {
            "Action": ["dynamodb:ConditionCheckItem", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Query"],
            "Resource": [
                dev.table_arn("dev_sosw_retry_tasks"),
                dev.index_arn("dev_sosw_retry_tasks", "labourer_id_greenfield"),
            ],
        },
        "ClosedTasks": {
            "Action": [
                "dynamodb:BatchGetItem",
                "dynamodb:ConditionCheckItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
            ],
            "Resource": [dev.table_arn("dev_sosw_closed_tasks")],
        },
        "SlotCounters": {
            "Action": ["dynamodb:UpdateItem"],
            "Resource": [dev.table_arn("dev_sosw_orchestrator_leases")],
        },
        "WakeDispatch": {"Action": ["lambda:InvokeFunction"], "Resource": [_named_function("dev_sosw_orchestrator")]},
        "DeadTaskNotices": {
            "Action": ["dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Scan"],
            "Resource": [dev.table_arn("dev_sosw_orchestrator_leases")],
        },
        "PublishDeadTasks": {"Action": ["sns:Publish"], "Resource": [_dead_topic(dev)]},
        "EncryptDeadTasks": {"Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": [_messaging_key(dev)]},
        "ReadWorkerTimeouts": {
            "Action": ["lambda:GetFunctionConfiguration"],
            "Resource": [dev.function_arn("dev_example_worker")],
        },
        # Following the jobs: their headers and counters, the sweep of a failed job's tasks, the end event
        "Jobs": {
            "Action": ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
            "Resource": [dev.table_arn("dev_sosw_jobs"), dev.index_arn("dev_sosw_jobs", "sosw_jobs_by_list")],
        },
        "SweepJobTasks": {
            "Action": ["dynamodb:BatchGetItem"],
            "Resource": [
                dev.table_arn("dev_sosw_closed_tasks"),
                dev.table_arn("dev_sosw_retry_tasks"),
                dev.table_arn("dev_sosw_tasks"),
            ],
        },
        "PublishJobEvents": {"Action": ["events:PutEvents"], "Resource": [_account_arn("events", "event-bus/default")]},
    }
    assert dev.statements_by_sid("dev_sosw_scavenger") == expected
    invokes = [s for s in dev.statements("dev_sosw_scavenger") if "lambda:InvokeFunction" in as_list(s["Action"])]
    assert [s["Resource"] for s in invokes] == [_named_function("dev_sosw_orchestrator")]


def test_assistant_and_failure_handler_report_free_slots_wake_dispatch_and_the_assistant_closes_completions(
    dev: Synth,
):
    reporting = {
        "OpenTasks": {
            "Action": ["dynamodb:GetItem", "dynamodb:UpdateItem"],
            "Resource": [dev.table_arn("dev_sosw_tasks")],
        },
        "SlotCounters": {
            "Action": ["dynamodb:UpdateItem"],
            "Resource": [dev.table_arn("dev_sosw_orchestrator_leases")],
        },
        "WakeDispatch": {
            "Action": ["lambda:InvokeFunction"],
            "Resource": [_named_function("dev_sosw_orchestrator"), _named_function("dev_sosw_scavenger")],
        },
    }
    assert dev.statements_by_sid("dev_sosw_failure_handler") == {
        **_control(dev, "dev_sosw_failure_handler"),
        **reporting,
    }
    # The assistant closes a completion in one transaction: delete the open task, put the closed one, and
    # count it on one of its job's counter items (keys with '#'; a job's header key never has one)
    assert dev.statements_by_sid("dev_sosw_worker_assistant") == {
        **_control(dev, "dev_sosw_worker_assistant"),
        **reporting,
        "CloseCompletedTasks": {"Action": ["dynamodb:DeleteItem"], "Resource": [dev.table_arn("dev_sosw_tasks")]},
        "ArchiveCompletedTasks": {"Action": ["dynamodb:PutItem"], "Resource": [dev.table_arn("dev_sosw_closed_tasks")]},
        "JobCounters": {
            "Action": ["dynamodb:UpdateItem"],
            "Resource": [dev.table_arn("dev_sosw_jobs")],
            "Condition": {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["*#*"]}},
        },
    }


def test_scheduler_creates_jobs_and_their_tasks_reads_job_files_and_continues_only_itself(dev: Synth):
    bucket = dev.logical_id("AWS::S3::Bucket")
    expected = {
        **_control(dev, "dev_sosw_scheduler"),
        "Jobs": {
            "Action": ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
            "Resource": [dev.table_arn("dev_sosw_jobs")],
        },
        # Conditional creation: put if the id is in none of the three tables; the queue's end from the index
        "CreateTasks": {
            "Action": ["dynamodb:ConditionCheckItem", "dynamodb:PutItem", "dynamodb:Query"],
            "Resource": [dev.table_arn("dev_sosw_tasks"), dev.index_arn("dev_sosw_tasks", "sosw_tasks_greenfield")],
        },
        "TaskIdsTaken": {
            "Action": ["dynamodb:ConditionCheckItem"],
            "Resource": [dev.table_arn("dev_sosw_closed_tasks"), dev.table_arn("dev_sosw_retry_tasks")],
        },
        "ReadJobFiles": {
            "Action": ["s3:GetObject"],
            "Resource": [{"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/*"]]}],
        },
        "ContinueItself": {
            "Action": ["lambda:InvokeFunction"],
            "Resource": [_account_arn("lambda", "function:dev_sosw_scheduler")],
        },
    }
    assert dev.statements_by_sid("dev_sosw_scheduler") == expected


def _account_arn(service: str, resource: str) -> dict[str, Any]:
    parts = ["arn:", {"Ref": "AWS::Partition"}, f":{service}:", {"Ref": "AWS::Region"}, ":"]
    return {"Fn::Join": ["", [*parts, {"Ref": "AWS::AccountId"}, f":{resource}"]]}


def test_a_worker_may_only_report_to_the_assistant_and_reach_the_failure_handler(dev: Synth):
    expected = {
        "WriteOwnLogs": {
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": [_log_group_arn(dev, "dev_example_worker")],
        },
        "ReportToAssistant": {
            "Action": ["lambda:InvokeFunction"],
            "Resource": [dev.function_arn("dev_sosw_worker_assistant")],
        },
        "SendFailedEvents": {
            "Action": ["lambda:InvokeFunction"],
            "Resource": [dev.function_arn("dev_sosw_failure_handler")],
        },
    }
    assert dev.statements_by_sid("dev_example_worker") == expected


def test_the_only_statement_without_a_sid_is_xray_which_active_tracing_needs(dev: Synth):
    for name in [f["Properties"]["FunctionName"] for f in dev.of_type("AWS::Lambda::Function").values()]:
        unnamed = [s for s in dev.statements(name) if "Sid" not in s]
        assert unnamed == [XRAY], name


def test_no_wildcard_actions_and_star_resources_only_where_aws_has_no_resource_level_permissions(
    dev: Synth, prod: Synth
):
    for synth in (dev, prod):
        for policy in synth.of_type("AWS::IAM::Policy").values():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                actions = set(as_list(statement["Action"]))
                assert not any("*" in action for action in actions), statement
                if "*" in as_list(statement["Resource"]):
                    assert actions <= NO_RESOURCE_LEVEL, statement
        for role in synth.of_type("AWS::IAM::Role").values():
            assert "ManagedPolicyArns" not in role["Properties"]  # no AWS-managed policies


def test_prod_orchestrator_invokes_exactly_the_configured_workers_created_or_imported(prod: Synth):
    resources = prod.statements_by_sid("prod_sosw_orchestrator")["InvokeWorkers"]["Resource"]
    formatted = [r for r in resources if "Fn::Join" in r]
    assert len(resources) == 4 and len(formatted) == 1
    assert _sorted(r for r in resources if r not in formatted) == _sorted(
        [
            prod.function_arn("prod_example_worker"),
            prod.function_arn("prod_resize"),
            LEGACY_ARN,  # an alias: exactly the qualified ARN the Orchestrator invokes
        ]
    )
    # A worker imported by name: in the stack's own account and region
    assert formatted[0]["Fn::Join"][1][-1] == ":function:someone_elses_worker"
    timeouts = prod.statements_by_sid("prod_sosw_scavenger")["ReadWorkerTimeouts"]["Resource"]
    assert _sorted(timeouts) == _sorted(resources)


def _sorted(values: Any) -> list[Any]:
    return sorted(values, key=json.dumps)


def test_a_customer_managed_table_key_is_usable_only_through_dynamodb(prod: Synth):
    for name in (
        "prod_sosw_orchestrator",
        "prod_sosw_scavenger",
        "prod_sosw_worker_assistant",
        "prod_sosw_failure_handler",
        "prod_sosw_scheduler",
    ):
        statement = prod.statements_by_sid(name)["UseTableKey"]
        assert statement["Action"] == ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey"]
        assert statement["Resource"][0]["Fn::GetAtt"][1] == "Arn"
        (condition,) = statement["Condition"]["StringEquals"].values()
        assert condition == {"Fn::Join": ["", ["dynamodb.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
    assert "UseTableKey" not in prod.statements_by_sid("prod_resize")
