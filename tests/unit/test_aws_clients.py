"""The clients every Lambda shares: their settings are what the Orchestrator's parallel invocations rely on."""

from __future__ import annotations

from sosw import aws
from sosw.managers.task import TaskManager
from sosw.orchestrator import Orchestrator


def test_client_pools_hold_a_connection_per_orchestrator_thread(monkeypatch):
    # Given the clients the stack's Lambdas create, and an Orchestrator with its default thread count
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    dynamodb, lambda_ = aws.dynamodb_client(), aws.lambda_client()
    orchestrator = Orchestrator(TaskManager({}, dynamodb_client=dynamodb, lambda_client=lambda_))

    # Then each client keeps at least one connection per invoking thread (botocore's default is 10)
    for client in (dynamodb, lambda_):
        assert client.meta.config.max_pool_connections >= orchestrator.max_workers


def test_invoke_is_never_retried_by_botocore(monkeypatch):
    # A retried Invoke after a read timeout could deliver the event twice: the TaskManager decides instead.
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert aws.lambda_client().meta.config.retries["total_max_attempts"] == 1
