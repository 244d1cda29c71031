"""cdk-nag (v3, AwsSolutions and Serverless packs): no finding left unacknowledged, each with a reason."""

from __future__ import annotations

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_sns as sns
from cdk_nag import AwsSolutionsChecks, ServerlessChecks

from tests.infra.conftest import Synth

PACKS = (AwsSolutionsChecks, ServerlessChecks)


def _findings(app: App) -> list[str]:
    findings = []
    for pack in PACKS:
        for violation in pack().validate_scope(app).violations:
            for resource in violation.violating_resources:
                findings.append(f"{violation.rule_name} ({violation.severity}) at {resource.construct_path}")
    return findings


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_no_unacknowledged_finding_errors_and_warnings_alike(stage: str, request: pytest.FixtureRequest):
    synth: Synth = request.getfixturevalue(stage)
    assert _findings(synth.app) == []


def test_every_acknowledgment_gives_a_reason_a_reviewer_can_check(dev: Synth, prod: Synth):
    acknowledged: dict[str, str] = {}
    for synth in (dev, prod):
        for node in synth.app.node.find_all():
            for entry in node.node.metadata:
                if entry.type == Validations.ACKNOWLEDGED_RULES_METADATA_KEY:
                    acknowledged.update(entry.data)
    rules = {rule.removeprefix("Annotation::") for rule in acknowledged}
    bucket = dev.logical_id("AWS::S3::Bucket")
    assert f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/*]" in rules  # the Scheduler reads any uploaded job file
    rules.discard(f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/*]")
    # Only these, each for a stated cause: no blanket acknowledgment of a whole rule family
    assert rules == {
        "AwsSolutions-IAM5[Resource::*]",  # X-Ray and cloudwatch:GetMetricStatistics
        "Serverless-LambdaDLQ",  # on-failure destinations instead
        "AwsSolutions-SQS3",  # the failed-events queue is itself the DLQ
        "Serverless-SQSRedrivePolicy",
        "Serverless-SNSRedrivePolicy",  # the alarm email subscription
        "Serverless-LambdaEventSourceMappingDestination",  # a lost wake-up: the schedule dispatches anyway
        "AwsSolutions-S1",  # no access logs on the job-files bucket
    }
    for rule, reason in acknowledged.items():
        assert len(reason) > 60, rule


def test_the_check_is_not_vacuous_an_unencrypted_topic_is_found():
    app = App()
    sns.Topic(Stack(app, "Careless"), "Topic")
    assert any("AwsSolutions-SNS3" in finding for finding in _findings(app))
