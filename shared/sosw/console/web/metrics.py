"""Completions per minute over the last hour, from CloudWatch: the workers' ``worker_completed`` metric.

The chart reads the metric the workers publish (EMF, one datapoint per completion, dimension
``labourer_id``), never the tables: one GetMetricData request for every labourer, whatever the number
of tasks. The local stack's metrics reach its CloudWatch (moto's) as the deployed ones reach AWS's
(:mod:`sosw.local.emf`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from sosw import aws

__all__ = ["CompletionMetrics", "Rate"]

logger = Logger(child=True)

METRIC = "worker_completed"
#: One point a minute over the last hour.
PERIOD = 60
POINTS = 60


@dataclass
class Rate:
    """A labourer's completions per minute, oldest first (0 where a minute had none)."""

    per_minute: list[float] = field(default_factory=list)

    @property
    def last(self) -> float | None:
        """Completions in the last whole minute (the one in progress is not counted yet)."""
        return self.per_minute[-2] if len(self.per_minute) >= 2 else None

    def sparkline(self, width: int = 120, height: int = 24) -> str:
        """An SVG polyline's points for the hour, scaled to its busiest minute."""
        if not self.per_minute:
            return ""
        top = max(self.per_minute) or 1.0
        step = width / max(1, len(self.per_minute) - 1)
        return " ".join(
            f"{i * step:.1f},{height - (v / top) * (height - 2) - 1:.1f}" for i, v in enumerate(self.per_minute)
        )


class CompletionMetrics:
    """``CompletionMetrics().completions(["resize"], time.time())``: the last hour, a point a minute."""

    def __init__(self, cloudwatch_client: Any = None, namespace: str | None = None) -> None:
        self._client = cloudwatch_client
        self.namespace = namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "sosw")
        self.error: str | None = None

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = aws.cloudwatch_client()
        return self._client

    def completions(self, labourer_ids: Sequence[str], now: float) -> dict[str, Rate]:
        """Each labourer's rate; an empty dict (and ``error`` set) when CloudWatch can't be read."""
        if not labourer_ids:
            return {}
        end = datetime.fromtimestamp((int(now) // PERIOD + 1) * PERIOD, tz=UTC)
        start = datetime.fromtimestamp(end.timestamp() - PERIOD * POINTS, tz=UTC)
        queries = [
            {
                "Id": f"m{i}",
                "MetricStat": {
                    "Metric": {
                        "Namespace": self.namespace,
                        "MetricName": METRIC,
                        "Dimensions": [{"Name": "labourer_id", "Value": labourer}],
                    },
                    "Period": PERIOD,
                    "Stat": "Sum",
                },
            }
            for i, labourer in enumerate(labourer_ids)
        ]
        values: dict[str, dict[float, float]] = {lab: {} for lab in labourer_ids}
        try:
            request: dict[str, Any] = {"MetricDataQueries": queries, "StartTime": start, "EndTime": end}
            while True:
                response = self.client.get_metric_data(**request)
                for result in response.get("MetricDataResults", []):
                    labourer = labourer_ids[int(result["Id"][1:])]
                    for when, value in zip(result.get("Timestamps", []), result.get("Values", []), strict=False):
                        values[labourer][when.timestamp()] = float(value)
                if not response.get("NextToken"):
                    break
                request["NextToken"] = response["NextToken"]
        except (BotoCoreError, ClientError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            logger.warning("Completions not read from CloudWatch", extra={"error": self.error})
            return {}
        self.error = None
        minutes = [start.timestamp() + PERIOD * i for i in range(POINTS)]
        return {lab: Rate([values[lab].get(m, 0.0) for m in minutes]) for lab in labourer_ids}
