"""Per-labourer EMF metrics through Powertools.

Each metric carries the labourer as a dimension, so it is emitted as its own EMF line
(``single_metric``); the namespace and service come from the usual Powertools variables.
"""

from __future__ import annotations

import os

from aws_lambda_powertools.metrics import MetricUnit, single_metric


def put_labourer_metric(name: str, value: float, labourer_id: str, unit: str = MetricUnit.Count) -> None:
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "sosw")
    with single_metric(name=name, unit=unit, value=value, namespace=namespace) as metric:
        metric.add_dimension(name="labourer_id", value=labourer_id)


def put_labourer_metrics(labourer_id: str, counts: dict[str, float], unit: str = MetricUnit.Count) -> None:
    for name, value in counts.items():
        put_labourer_metric(name, value, labourer_id, unit)
