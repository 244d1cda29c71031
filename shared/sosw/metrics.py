"""Per-labourer EMF metrics through Powertools: one document per labourer per run.

A run (of the Orchestrator, the Scavenger, a worker) hands over all of a labourer's figures at once;
they go out as one Embedded Metric Format document, batched by Powertools' ``Metrics`` under the
one dimension ``labourer_id``, and flushed right away. ``single_metric`` would write one log line
per figure: six a labourer for every Orchestrator run, six times the log ingestion for the same
metrics.

The only dimension is ``labourer_id``: the alarms and the dashboard (``infra/monitoring.py``) look
the metrics up by exactly that dimension set, so the service name (which Powertools would add from
``POWERTOOLS_SERVICE_NAME``) is left out. The namespace is ``POWERTOOLS_METRICS_NAMESPACE``.

    put_labourer_metrics("resize", {"invoked": 12, "running": 3}, seconds={"orchestrator_duration": 1.4})
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

__all__ = ["put_labourer_metric", "put_labourer_metrics"]


def put_labourer_metrics(
    labourer_id: str,
    counts: Mapping[str, float | None],
    unit: str = MetricUnit.Count,
    *,
    seconds: Mapping[str, float | None] | None = None,
) -> None:
    """All of a labourer's figures of one run as one EMF document: ``counts`` in ``unit``, ``seconds`` in
    seconds. A figure that is None (not measured in this run) is left out; nothing is written when none is left.
    """
    # EphemeralMetrics: a batch of its own, so a handler's own ``Metrics`` (shared class-wide) is untouched.
    metrics = EphemeralMetrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "sosw"), service="")
    metrics.add_dimension(name="labourer_id", value=labourer_id)
    added = 0
    for figures, figure_unit in ((counts, unit), (seconds or {}, MetricUnit.Seconds)):
        for name, value in figures.items():
            if value is not None:
                metrics.add_metric(name=name, unit=figure_unit, value=value)
                added += 1
    if added:
        metrics.flush_metrics()


def put_labourer_metric(name: str, value: float, labourer_id: str, unit: str = MetricUnit.Count) -> None:
    """One figure alone (a worker's skipped delivery): still one document, with the same dimension."""
    put_labourer_metrics(labourer_id, {name: value}, unit)
