"""Fixtures for the drop-in tests: tables made from sosw's own definitions on DynamoDB Local, and a real
SNS (moto's server) with a queue subscribed, so published dead-task notifications can be read back.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from sosw import aws
from sosw.clock import ManualClock
from sosw.local.dynamodb_local import free_port
from sosw.local.tables import create_tables, prefixed_config
from sosw.managers.ecology import EcologyManager
from sosw.managers.task import TaskManager

_prefixes = itertools.count()

LABOURERS = {
    "alpha": {"max_simultaneous_invocations": 5, "duration": 60, "cooldown": 30, "max_duration": 60},
    "beta": {"max_simultaneous_invocations": 2, "max_attempts": 2, "duration": 60, "cooldown": 30, "max_duration": 60},
    "gamma": {"max_attempts": 1, "duration": 60, "cooldown": 30, "max_duration": 60},
}


@pytest.fixture
def on_local(dynamodb_local: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local.endpoint_url)
    return dynamodb_local.endpoint_url


@pytest.fixture
def sosw_config(on_local: str) -> dict[str, Any]:
    """A config whose tasks, retry and closed tables are fresh and exactly as sosw's template makes them."""
    config = prefixed_config(f"sw{os.getpid()}_{next(_prefixes)}_", {"labourers": LABOURERS})
    create_tables(aws.dynamodb_client(), config, sosw_definitions=True)
    return config


#: The labourers of the differential suite's pairs of tables (``pair``).
PAIR_LABOURERS = {
    "l1": {"arn": "l1", "max_simultaneous_invocations": 5},
    "l2": {"arn": "l2", "max_simultaneous_invocations": 2},
}


@pytest.fixture
def pair(on_local: str) -> Callable[..., tuple[dict[str, Any], dict[str, Any]]]:
    """Two sets of tables made from sosw's definitions: sosw's side and ours."""

    def make(labourers: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        configs = []
        for side in ("sw", "ou"):
            config = prefixed_config(
                f"d{side}{os.getpid()}_{next(_prefixes)}_", {"labourers": labourers or PAIR_LABOURERS}
            )
            create_tables(aws.dynamodb_client(), config, sosw_definitions=True)
            configs.append(config)
        return configs[0], configs[1]

    return make


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000)


@pytest.fixture
def sosw_manager(sosw_config: dict[str, Any], clock: ManualClock) -> TaskManager:
    return TaskManager(sosw_config, clock=clock, ecology_client=EcologyManager(sosw_config, clock=clock))


class Topic:
    """A real SNS topic (moto's server) with an SQS queue subscribed: what was published can be read back."""

    def __init__(self, name: str) -> None:
        self.sns, self.sqs = boto3.client("sns"), boto3.client("sqs")
        self.arn = self.sns.create_topic(Name=name)["TopicArn"]
        self.queue_url = self.sqs.create_queue(QueueName=f"{name}-q")["QueueUrl"]
        queue_arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.sns.subscribe(TopicArn=self.arn, Protocol="sqs", Endpoint=queue_arn)

    def messages(self) -> list[dict[str, Any]]:
        found = []
        while batch := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", []):
            for message in batch:
                found.append(json.loads(json.loads(message["Body"])["Message"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return found


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def make_topic(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Callable[[], Topic]:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", moto_server)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", moto_server)
    return lambda: Topic(f"dead{os.getpid()}-{next(_prefixes)}")
