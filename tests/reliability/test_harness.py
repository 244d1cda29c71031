"""The fault injector itself: what its figures mean, so the suite's bounds on them are the right ones."""

from __future__ import annotations

import time

import boto3
import pytest
from botocore.exceptions import ClientError

from sosw.aws import DYNAMODB_CONFIG
from tests.reliability.harness import DynamoFaults


def test_one_call_answered_only_by_faults_is_tried_six_times_and_the_injector_counts_attempts(monkeypatch):
    # botocore passes the attempt number (1 to total_max_attempts) to needs-retry, not the retry count
    monkeypatch.setattr(time, "sleep", lambda _seconds: None)  # the backoff between attempts
    client = boto3.client(
        "dynamodb",
        region_name="eu-west-1",
        endpoint_url="http://127.0.0.1:9",  # never reached: the injector answers before sending
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=DYNAMODB_CONFIG,
    )
    faults = DynamoFaults(rate=1.0)
    faults.install(client)
    with pytest.raises(ClientError) as raised:
        client.get_item(TableName="t", Key={"k": {"S": "v"}})
    assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == 5
    assert sum(faults.injected.values()) == 6
    assert faults.max_attempts_seen == 6
