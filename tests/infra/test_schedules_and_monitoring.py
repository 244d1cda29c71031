"""Schedules run the Orchestrator and Scavenger; alarms and the dashboard watch them."""

from __future__ import annotations

import json

from tests.infra.conftest import Synth


def _rule_for(synth: Synth, function_name: str) -> dict:
    arn = synth.function_arn(function_name)
    (rule,) = [
        r["Properties"]
        for r in synth.of_type("AWS::Events::Rule").values()
        if r["Properties"]["Targets"][0]["Arn"] == arn
    ]
    return rule


def test_rules_run_orchestrator_and_scavenger_every_minute_by_default(dev: Synth):
    queue = {"Fn::GetAtt": [dev.logical_id("AWS::SQS::Queue"), "Arn"]}
    for name in ("dev_sosw_orchestrator", "dev_sosw_scavenger"):
        rule = _rule_for(dev, name)
        assert rule["ScheduleExpression"] == "rate(1 minute)"
        assert rule["State"] == "ENABLED"
        (target,) = rule["Targets"]
        # A missed delivery is retried within the minute, then kept in the failed-events queue
        assert target["RetryPolicy"] == {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 60}
        assert target["DeadLetterConfig"] == {"Arn": queue}


def test_rates_are_configurable(prod: Synth):
    assert _rule_for(prod, "prod_sosw_orchestrator")["ScheduleExpression"] == "rate(2 minutes)"
    assert _rule_for(prod, "prod_sosw_scavenger")["ScheduleExpression"] == "cron(0/5 * * * ? *)"


def test_eventbridge_may_invoke_only_the_two_scheduled_functions_and_the_scheduler_from_its_own_rules(dev: Synth):
    permissions = [p["Properties"] for p in dev.of_type("AWS::Lambda::Permission").values()]
    assert sorted(json.dumps(p["FunctionName"]) for p in permissions) == sorted(
        json.dumps(dev.function_arn(n)) for n in ("dev_sosw_orchestrator", "dev_sosw_scavenger", "dev_sosw_scheduler")
    )
    rules = {k for k in dev.of_type("AWS::Events::Rule")}
    for permission in permissions:
        assert permission["Principal"] == "events.amazonaws.com"
        assert permission["SourceArn"]["Fn::GetAtt"][0] in rules


def _alarms(synth: Synth) -> dict[str, dict]:
    return {a["Properties"]["AlarmName"]: a["Properties"] for a in synth.of_type("AWS::CloudWatch::Alarm").values()}


def _alarm_topic(synth: Synth) -> dict:
    (topic,) = [
        k for k, t in synth.of_type("AWS::SNS::Topic").items() if t["Properties"]["DisplayName"].endswith("alarms")
    ]
    return {"Ref": topic}


def test_every_control_function_has_an_error_alarm_notifying_the_alarm_topic(dev: Synth):
    alarms = _alarms(dev)
    for role in ("orchestrator", "scavenger", "worker_assistant", "failure_handler"):
        alarm = alarms[f"sosw-dev-{role}-errors"]
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Lambda", "Errors", "Sum")
        assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": dev.function(f"dev_sosw_{role}")[0]}}]
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and alarm["Threshold"] == 1
        assert alarm["AlarmActions"] == [_alarm_topic(dev)] and alarm["OKActions"] == [_alarm_topic(dev)]


def test_silence_alarms_fire_when_no_scheduled_run_succeeds_for_n_periods(dev: Synth, prod: Synth):
    for synth, name, period, periods in (
        (dev, "orchestrator", 60, 3),
        (dev, "scavenger", 60, 3),
        (prod, "orchestrator", 120, 5),  # rate(2 minutes)
        (prod, "scavenger", 3600, 5),  # cron: judged hour by hour
    ):
        alarm = _alarms(synth)[f"sosw-{synth.config.stage}-{name}-silent"]
        assert alarm["ComparisonOperator"] == "LessThanThreshold" and alarm["Threshold"] == 1
        assert alarm["EvaluationPeriods"] == periods
        assert alarm["TreatMissingData"] == "breaching"  # no invocation at all is silence too
        expression = next(m for m in alarm["Metrics"] if "Expression" in m)
        assert expression["Expression"] == "FILL(invocations, 0) - FILL(errors, 0)"
        inputs = {m["Id"]: m["MetricStat"] for m in alarm["Metrics"] if "MetricStat" in m}
        assert {k: v["Metric"]["MetricName"] for k, v in inputs.items()} == {
            "invocations": "Invocations",
            "errors": "Errors",
        }
        assert {v["Period"] for v in inputs.values()} == {period}


def test_dead_tasks_and_failed_events_raise_alarms(dev: Synth):
    alarms = _alarms(dev)
    dead = alarms["sosw-dev-dead-tasks"]
    assert (dead["Namespace"], dead["MetricName"]) == ("AWS/SNS", "NumberOfMessagesPublished")
    (dimension,) = dead["Dimensions"]
    assert dimension["Name"] == "TopicName"
    failed = alarms["sosw-dev-failed-events"]
    assert (failed["Namespace"], failed["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dead["Threshold"] == failed["Threshold"] == 1


def test_topics_are_encrypted_with_a_rotated_key_cloudwatch_may_use(dev: Synth):
    (key_id,) = dev.of_type("AWS::KMS::Key")
    key = dev.resources[key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    cloudwatch = [
        s for s in key["KeyPolicy"]["Statement"] if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
    ]
    assert cloudwatch and cloudwatch[0]["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    for topic in dev.of_type("AWS::SNS::Topic").values():
        assert topic["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    (queue,) = dev.of_type("AWS::SQS::Queue").values()
    assert queue["Properties"]["SqsManagedSseEnabled"] is True


def test_an_alarm_email_subscribes_to_the_alarm_topic(dev: Synth, prod: Synth):
    assert not dev.of_type("AWS::SNS::Subscription")
    (subscription,) = prod.of_type("AWS::SNS::Subscription").values()
    assert subscription["Properties"]["Endpoint"] == "ops@example.com"
    assert subscription["Properties"]["TopicArn"] == _alarm_topic(prod)


def test_the_dashboard_shows_each_labourer_flow_by_search(prod: Synth):
    # Given the dashboard body: JSON text joined with deploy-time values
    (dashboard,) = prod.of_type("AWS::CloudWatch::Dashboard").values()
    text = "".join(
        p if isinstance(p, str) else "<token>" for p in dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    )
    queries = [
        m[0]["expression"]
        for w in json.loads(text)["widgets"]
        for m in w["properties"].get("metrics", [])
        if isinstance(m[0], dict) and "expression" in m[0]
    ]
    # Then every labourer has a SEARCH for each metric the handlers emit (their only dimension: labourer_id)
    metrics = (
        "invoked",
        "archived",
        "retried",
        "dead",
        "requeued",
        "running",
        "worker_completed",
        "queue_length",
        "oldest_queued_age",
        "orchestrator_duration",
        "orchestrator_errors",
    )
    for labourer in ("example_worker", "resize", "legacy", "by_name"):
        for metric in metrics:
            query = f'SEARCH(\'{{"sosw",labourer_id}} MetricName="{metric}" labourer_id="{labourer}"\''
            assert any(q.startswith(query) for q in queries), (labourer, metric)


def test_every_labourer_has_a_queue_age_alarm(prod: Synth):
    alarms = _alarms(prod)
    for labourer in ("example_worker", "resize", "legacy", "by_name"):
        alarm = alarms[f"sosw-prod-{labourer}-queue-age"]
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("sosw", "oldest_queued_age", "Maximum")
        assert alarm["Dimensions"] == [{"Name": "labourer_id", "Value": labourer}]
        assert alarm["Threshold"] == 3600 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
        assert alarm["AlarmActions"] == [_alarm_topic(prod)]


def test_a_job_file_uploaded_to_the_jobs_bucket_runs_the_scheduler(dev: Synth):
    (bucket_id,) = dev.of_type("AWS::S3::Bucket")
    bucket = dev.of_type("AWS::S3::Bucket")[bucket_id]["Properties"]
    # The bucket sends its events to EventBridge itself (no custom resource), and is private, encrypted, TLS-only
    assert bucket["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert not dev.of_type("Custom::S3BucketNotifications")
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"] == [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    ]
    assert bucket["LifecycleConfiguration"]["Rules"] == [{"ExpirationInDays": 30, "Status": "Enabled"}]
    (policy,) = [p["Properties"] for p in dev.of_type("AWS::S3::BucketPolicy").values()]
    (deny,) = policy["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    (rule,) = [r["Properties"] for r in dev.of_type("AWS::Events::Rule").values() if "EventPattern" in r["Properties"]]
    assert rule["EventPattern"] == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {
            "bucket": {"name": [{"Ref": bucket_id}]},
            "object": {"key": [{"suffix": ".json"}, {"suffix": ".jsonl"}]},
        },
    }
    (target,) = rule["Targets"]
    assert target["Arn"] == dev.function_arn("dev_sosw_scheduler")
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 2
    # Invoked asynchronously, retried by Lambda twice: a run killed by its timeout resumes
    (config,) = [
        c["Properties"]
        for c in dev.of_type("AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"]["FunctionName"] == {"Ref": dev.function("dev_sosw_scheduler")[0]}
    ]
    assert config["MaximumRetryAttempts"] == 2
