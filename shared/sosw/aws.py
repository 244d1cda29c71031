"""Plain boto3 clients, created lazily so that constructing a manager makes no AWS call.

They honour the standard ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` variables, which is how
the tests and the local run point them at DynamoDB Local and the local Lambda endpoint.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

#: Lambda Invoke must never be retried by botocore: a retry after a read timeout can deliver the
#: event twice. The TaskManager decides what a failed Invoke means (release the claim or not).
LAMBDA_INVOKE_CONFIG = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=15)

#: DynamoDB: botocore's standard retry mode (throttling and 5xx, with backoff), a few more tries.
DYNAMODB_CONFIG = Config(retries={"total_max_attempts": 6, "mode": "standard"})


def dynamodb_client() -> Any:
    return boto3.client("dynamodb", config=DYNAMODB_CONFIG)


def lambda_client() -> Any:
    return boto3.client("lambda", config=LAMBDA_INVOKE_CONFIG)


def cloudwatch_client() -> Any:
    return boto3.client("cloudwatch")
