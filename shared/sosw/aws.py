"""Plain boto3 clients, created lazily so that constructing a manager makes no AWS call.

They honour the standard ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` variables, which is how
the tests and the local run point them at DynamoDB Local and the local Lambda endpoint.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

#: Connections kept open per client. The Orchestrator invokes from up to ``orchestrator_max_workers``
#: threads on shared clients; with botocore's default of 10, every thread past the tenth opens and
#: drops a connection per call (in a profile of a 1,000-task dispatch, the invoking threads spent 15% of
#: their time opening connections).
MAX_POOL_CONNECTIONS = 64

#: Lambda Invoke must never be retried by botocore: a retry after a read timeout can deliver the
#: event twice. The TaskManager decides what a failed Invoke means (release the claim or not).
LAMBDA_INVOKE_CONFIG = Config(
    retries={"total_max_attempts": 1, "mode": "standard"},
    connect_timeout=5,
    read_timeout=15,
    max_pool_connections=MAX_POOL_CONNECTIONS,
)

#: DynamoDB: botocore's standard retry mode (throttling and 5xx, with backoff), a few more tries.
DYNAMODB_CONFIG = Config(
    retries={"total_max_attempts": 6, "mode": "standard"}, max_pool_connections=MAX_POOL_CONNECTIONS
)


def dynamodb_client() -> Any:
    return boto3.client("dynamodb", config=DYNAMODB_CONFIG)


def lambda_client() -> Any:
    return boto3.client("lambda", config=LAMBDA_INVOKE_CONFIG)


def cloudwatch_client() -> Any:
    return boto3.client("cloudwatch")


def events_client() -> Any:
    return boto3.client("events")
