"""Shared fixtures: a DynamoDB backend (moto in-process, or DynamoDB Local) with fresh tables per test.

Most TaskManager tests run on both backends (``backend`` parameter): moto for speed, DynamoDB Local
for the truth about conditions, indexes and transactions. ``-m "not integration"`` skips the latter.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from bench.ddb_limits import LimitsProxy
from sosw import aws
from sosw.clock import ManualClock
from sosw.local.dynamodb_local import DynamoDBLocal
from sosw.local.tables import create_tables, prefixed_config
from sosw.managers.ecology import EcologyManager
from sosw.managers.task import TaskManager
from tests.support.invoke_endpoint import InvokeEndpoint

# Never reach a real account from tests: fake credentials, a fixed region, no profile.
os.environ.update(
    AWS_ACCESS_KEY_ID="testing",
    AWS_SECRET_ACCESS_KEY="testing",
    AWS_SESSION_TOKEN="testing",
    AWS_DEFAULT_REGION="us-east-1",
)
os.environ.pop("AWS_PROFILE", None)
# In-process runs would print every EMF metric line to the test output.
os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")

LABOURERS = {
    "alpha": {"max_simultaneous_invocations": 5, "duration": 60, "cooldown": 30, "max_duration": 60},
    "beta": {"max_simultaneous_invocations": 2, "max_attempts": 2, "duration": 60, "cooldown": 30, "max_duration": 60},
}
_prefixes = itertools.count()


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    with DynamoDBLocal() as ddb:
        yield ddb


@pytest.fixture(params=["moto", pytest.param("local", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Where DynamoDB requests go for this test; clients are created through the standard env vars."""
    if request.param == "moto":
        from moto import mock_aws

        with mock_aws():
            yield "moto"
    else:
        # A test that asks for DynamoDB's limits (``ddb_limits``) reaches DynamoDB Local through them.
        front = "ddb_limits" if "ddb_limits" in request.fixturenames else "dynamodb_local"
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", request.getfixturevalue(front).endpoint_url)
        yield "local"


@pytest.fixture(scope="session")
def limits_proxy(dynamodb_local: DynamoDBLocal) -> Iterator[LimitsProxy]:
    """The emulation of DynamoDB's limits (``bench.ddb_limits``), one process for the session."""
    with LimitsProxy(dynamodb_local.endpoint_url) as proxy:
        yield proxy


@pytest.fixture
def ddb_limits(
    request: pytest.FixtureRequest, limits_proxy: LimitsProxy, monkeypatch: pytest.MonkeyPatch
) -> LimitsProxy:
    """DynamoDB Local behind the emulation of DynamoDB's limits, for this test.

    Reset (no holds, full buckets, no counts) and configured as plain DynamoDB Local would behave, except that
    overlapping transactions conflict (``hold_seconds=0``: for the length of the call); the test then asks for
    more: ``ddb_limits.configure(hold_seconds=0.015, write_units=2, billing={table: "PROVISIONED"})``. Clients
    created from now on reach it (``AWS_ENDPOINT_URL_DYNAMODB``); with ``backend``, only its "local" side runs.
    """
    callspec = getattr(request.node, "callspec", None)
    if callspec is not None and callspec.params.get("backend") == "moto":
        pytest.skip("DynamoDB's limits are emulated in front of DynamoDB Local, not moto")
    limits_proxy.reset()
    limits_proxy.configure(hold_seconds=0, write_units=None, read_units=None, billing={}, enabled=True)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", limits_proxy.endpoint_url)
    return limits_proxy


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_800_000_000)


@pytest.fixture
def lambda_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[InvokeEndpoint]:
    with InvokeEndpoint() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint.url)
        yield endpoint


@pytest.fixture
def config(backend: str) -> dict[str, Any]:
    """A config with fresh, empty tables of its own."""
    cfg = prefixed_config(f"t{os.getpid()}_{next(_prefixes)}_", {"labourers": LABOURERS})
    create_tables(aws.dynamodb_client(), cfg)
    return cfg


@pytest.fixture
def make_manager(config: dict[str, Any], clock: ManualClock) -> Callable[..., TaskManager]:
    def make(**overrides: Any) -> TaskManager:
        cfg = {**config, **overrides}
        return TaskManager(cfg, clock=clock, ecology_client=EcologyManager(cfg, clock=clock))

    return make


@pytest.fixture
def manager(make_manager: Callable[..., TaskManager]) -> TaskManager:
    return make_manager()


def scan_all(config: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every item of every table, by role: what the tests check "nothing was written" against."""
    from sosw.dynamo import deserialize_item
    from sosw.schema import table_schemas

    client = boto3.client("dynamodb")
    result = {}
    for role, schema in table_schemas(config).items():
        items = []
        for page in client.get_paginator("scan").paginate(TableName=schema.name, ConsistentRead=True):
            items.extend(deserialize_item(i) for i in page["Items"])
        result[role] = items
    return result
