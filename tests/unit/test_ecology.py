"""EcologyManager on moto's CloudWatch: health 0..4 from metrics and feelings."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from sosw.clock import ManualClock
from sosw.errors import ConfigError
from sosw.labourer import Labourer
from sosw.managers.ecology import EcologyManager

METRIC = {
    "details": {
        "Namespace": "Test/Load",
        "MetricName": "CPU",
        "Dimensions": [{"Name": "Db", "Value": "main"}],
        "Period": 60,
        "Statistics": ["Average"],
    },
    "feelings": {3: 50, 4: 25},
    "feeling_comparison_operator": "__le__",
}


@pytest.fixture
def cloudwatch():
    with mock_aws():
        yield boto3.client("cloudwatch", region_name="us-east-1")


def put(cloudwatch, value: float) -> None:
    cloudwatch.put_metric_data(
        Namespace="Test/Load",
        MetricData=[
            {
                "MetricName": "CPU",
                "Dimensions": [{"Name": "Db", "Value": "main"}],
                "Value": value,
                "Timestamp": datetime.now(tz=UTC),
            }
        ],
    )


@pytest.mark.parametrize(("value", "health"), [(10, 4), (40, 3), (90, 0)])
def test_health_follows_the_feelings(cloudwatch, value, health):
    put(cloudwatch, value)
    ecology = EcologyManager(clock=ManualClock(time.time() + 60), cloudwatch_client=cloudwatch)
    assert ecology.get_labourer_status(Labourer(id="w", health_metrics={"cpu": METRIC})) == health


def test_health_is_the_worst_of_several_metrics(cloudwatch):
    put(cloudwatch, 40)  # Good (3)
    moderate = {**METRIC, "feelings": {2: 45, 4: 10}}
    ecology = EcologyManager(clock=ManualClock(time.time() + 60), cloudwatch_client=cloudwatch)
    labourer = Labourer(id="w", health_metrics={"a": METRIC, "b": moderate})
    assert ecology.get_labourer_status(labourer) == 2


def test_no_metrics_is_high_health_and_no_datapoints_is_ignored(cloudwatch):
    ecology = EcologyManager(clock=ManualClock(time.time() + 60), cloudwatch_client=cloudwatch)
    assert ecology.get_labourer_status(Labourer(id="w")) == 4
    assert ecology.get_labourer_status(Labourer(id="w", health_metrics={"cpu": METRIC})) == 4


def test_bad_operator_names_the_key(cloudwatch):
    put(cloudwatch, 10)
    bad = {**METRIC, "feeling_comparison_operator": "__eq__"}
    ecology = EcologyManager(clock=ManualClock(time.time() + 60), cloudwatch_client=cloudwatch)
    with pytest.raises(ConfigError, match=r"w\.health_metrics\.cpu\.feeling_comparison_operator"):
        ecology.get_labourer_status(Labourer(id="w", health_metrics={"cpu": bad}))


def test_max_duration_falls_back_to_duration_when_lambda_is_unknown(cloudwatch):
    ecology = EcologyManager(clock=ManualClock(), lambda_client=boto3.client("lambda", region_name="us-east-1"))
    assert ecology.get_labourer_max_duration(Labourer(id="missing", duration=42)) == 42
