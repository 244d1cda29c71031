"""The EcologyManager: how healthy a labourer is, and how long its worker may run.

Health is 0 (Bad) .. 4 (High): the worst of the labourer's health metrics, each a CloudWatch
statistic compared with the labourer's ``feelings`` thresholds; 4 when none are set. The
Orchestrator scales a labourer's invocations by it (``invocation_number_coefficient``).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from sosw import aws
from sosw.clock import Clock, SystemClock
from sosw.errors import ConfigError
from sosw.labourer import Labourer

__all__ = ["HEALTH_LEVELS", "EcologyManager", "TaskCounts"]

logger = Logger(child=True)

HEALTH_LEVELS = {0: "Bad", 1: "Poor", 2: "Moderate", 3: "Good", 4: "High"}
_OPERATORS = {
    "__lt__": operator.lt,
    "__le__": operator.le,
    "__gt__": operator.gt,
    "__ge__": operator.ge,
}
_STATISTICS = ("Average", "Sum", "Minimum", "Maximum", "SampleCount")


class TaskCounts(Protocol):
    """What the EcologyManager needs of the tasks: two reads. A TaskManager is one; so is a test double."""

    def get_count_of_running_tasks_for_labourer(self, labourer: Labourer) -> int: ...

    def get_average_labourer_duration(self, labourer: Labourer) -> int: ...


class EcologyManager:
    """Labourer health, running counts and max durations, cached for one orchestrator run."""

    def __init__(
        self,
        custom_config: Mapping[str, Any] | None = None,
        *,
        clock: Clock | None = None,
        cloudwatch_client: Any = None,
        lambda_client: Any = None,
    ) -> None:
        self.config = dict(custom_config or {})
        self.clock = clock or SystemClock()
        self._cloudwatch = cloudwatch_client
        self._lambda = lambda_client
        self.task_client: TaskCounts | None = None
        self._metric_cache: dict[str, float | None] = {}
        self._max_durations: dict[str, int] = {}

    @property
    def cloudwatch_client(self) -> Any:
        if self._cloudwatch is None:
            self._cloudwatch = aws.cloudwatch_client()
        return self._cloudwatch

    @property
    def lambda_client(self) -> Any:
        if self._lambda is None:
            self._lambda = aws.lambda_client()
        return self._lambda

    def register_task_manager(self, task_manager: TaskCounts) -> None:
        """Read running counts and durations through this (sosw's name: it is given the TaskManager).

        Resets the per-run caches.
        """
        self.task_client = task_manager
        self._metric_cache.clear()

    def get_labourer_status(self, labourer: Labourer) -> int:
        """Health 0..4: the worst over the labourer's health metrics, 4 when it has none."""
        health = 4
        for name, metric in labourer.health_metrics.items():
            value = self._metric_value(labourer, name, metric)
            if value is None:
                logger.warning(
                    "Health metric has no datapoints: ignored", extra={"labourer_id": labourer.id, "metric": name}
                )
                continue
            health = min(health, self.feeling_for(labourer, name, metric, value))
        return health

    @staticmethod
    def feeling_for(labourer: Labourer, name: str, metric: Mapping[str, Any], value: float) -> int:
        """The highest health level whose threshold the value meets (0, Bad, if it meets none)."""
        key = f"{labourer.id}.health_metrics.{name}"
        feelings = metric.get("feelings")
        if not isinstance(feelings, Mapping) or not feelings:
            raise ConfigError(f"{key}.feelings: expected {{health level: threshold}}, got {feelings!r}")
        op_name = metric.get("feeling_comparison_operator", "__le__")
        if op_name not in _OPERATORS:
            raise ConfigError(
                f"{key}.feeling_comparison_operator: expected one of {sorted(_OPERATORS)}, got {op_name!r}"
            )
        compare = _OPERATORS[op_name]
        for level, threshold in sorted(((int(k), v) for k, v in feelings.items()), reverse=True):
            if not 0 <= level <= 4:
                raise ConfigError(f"{key}.feelings: health levels are 0..4, got {level!r}")
            if compare(value, threshold):
                return level
        return 0

    def metric_value(self, labourer: Labourer, name: str, metric: Mapping[str, Any]) -> float | None:
        """The health metric's current value as :meth:`get_labourer_status` compares it (None: no datapoints).

        Cached for the run, as the health is: the console shows each value beside its thresholds.
        """
        return self._metric_value(labourer, name, metric)

    def _metric_value(self, labourer: Labourer, name: str, metric: Mapping[str, Any]) -> float | None:
        details = metric.get("details")
        if not isinstance(details, Mapping):
            raise ConfigError(f"{labourer.id}.health_metrics.{name}.details: expected a dict, got {details!r}")
        cache_key = repr(sorted(details.items(), key=lambda kv: kv[0]))
        if cache_key in self._metric_cache:
            return self._metric_cache[cache_key]
        statistic = (details.get("Statistics") or ["Average"])[0]
        if statistic not in _STATISTICS:
            raise ConfigError(f"{labourer.id}.health_metrics.{name}.details.Statistics: expected one of {_STATISTICS}")
        period = int(details.get("Period", 60))
        timespan = int(details.get("MetricAggregationTimespan", max(period, 300)))
        now = datetime.fromtimestamp(self.clock.now(), tz=UTC)
        response = self.cloudwatch_client.get_metric_statistics(
            Namespace=details["Namespace"],
            MetricName=details.get("MetricName") or details["Name"],
            Dimensions=list(details.get("Dimensions", [])),
            StartTime=now - timedelta(seconds=timespan),
            EndTime=now,
            Period=period,
            Statistics=[statistic],
        )
        points = [p[statistic] for p in response.get("Datapoints", []) if statistic in p]
        value = (sum(points) / len(points)) if points else None
        self._metric_cache[cache_key] = value
        return value

    def count_running_tasks_for_labourer(self, labourer: Labourer) -> int:
        """Tasks we assume are running now (delegates to the registered TaskManager)."""
        if self.task_client is None:
            raise RuntimeError("EcologyManager has no TaskManager: call register_task_manager() first")
        return self.task_client.get_count_of_running_tasks_for_labourer(labourer)

    def get_labourer_average_duration(self, labourer: Labourer) -> int:
        """Average duration of the labourer's last closed tasks (sosw's; 0 without a TaskManager or tasks)."""
        if self.task_client is None:
            return 0
        return self.task_client.get_average_labourer_duration(labourer)

    def get_labourer_max_duration(self, labourer: Labourer) -> int:
        """The worker's configured Lambda Timeout; the labourer's ``duration`` if it can't be read."""
        if labourer.id not in self._max_durations:
            try:
                response = self.lambda_client.get_function_configuration(FunctionName=labourer.arn)
                self._max_durations[labourer.id] = int(response["Timeout"])
            except (ClientError, BotoCoreError, KeyError) as exc:
                logger.warning(
                    "Could not read the worker's Timeout: using its duration",
                    extra={"labourer_id": labourer.id, "error": str(exc)},
                )
                return int(labourer.duration)
        return self._max_durations[labourer.id]

    get_max_labourer_duration = get_labourer_max_duration
