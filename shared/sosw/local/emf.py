"""What CloudWatch does with a Lambda's Embedded Metric Format lines, for the local stack.

On AWS, a function's EMF log lines (Powertools' metrics) become CloudWatch metrics. Locally, the functions
write their output to the local Lambda endpoint's log files; this follows those files and puts each EMF
document's figures on the local CloudWatch (moto's server) with PutMetricData, so what reads metrics (the
console's completions chart) reads them locally as it does on AWS.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["EmfForwarder", "metric_data"]


def metric_data(document: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(namespace, MetricDatum)`` for every figure of one EMF document (nothing if it is not one)."""
    meta = document.get("_aws")
    if not isinstance(meta, Mapping):
        return
    timestamp = meta.get("Timestamp")
    when = datetime.fromtimestamp(timestamp / 1000, tz=UTC) if isinstance(timestamp, int | float) else None
    for directive in meta.get("CloudWatchMetrics") or []:
        namespace = directive.get("Namespace")
        dimension_sets = directive.get("Dimensions") or [[]]
        for metric in directive.get("Metrics") or []:
            name = metric.get("Name")
            values = document.get(name)
            values = values if isinstance(values, list) else [values]
            for names in dimension_sets:
                dimensions = [{"Name": n, "Value": str(document[n])} for n in names if n in document]
                for value in values:
                    if isinstance(value, int | float) and not isinstance(value, bool) and namespace and name:
                        datum: dict[str, Any] = {"MetricName": name, "Dimensions": dimensions, "Value": float(value)}
                        if metric.get("Unit"):
                            datum["Unit"] = metric["Unit"]
                        if when is not None:
                            datum["Timestamp"] = when
                        yield namespace, datum


class EmfForwarder:
    """``EmfForwarder(log_dir, cloudwatch_client).start()``: follows ``*.log`` there until ``stop()``."""

    def __init__(self, log_dir: str | Path, cloudwatch_client: Any, interval: float = 1.0) -> None:
        self.log_dir = Path(log_dir)
        self.client = cloudwatch_client
        self.interval = interval
        self._offsets: dict[Path, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.forwarded = 0

    def start(self) -> EmfForwarder:
        self._thread = threading.Thread(target=self._run, name="emf-forwarder", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.poll()  # the last lines written before the stop

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except Exception:  # a metric lost costs a chart point, never the local stack
                continue

    def poll(self) -> int:
        """Forward the complete lines written since the last poll; returns how many figures were put."""
        batches: dict[str, list[dict[str, Any]]] = {}
        for path in sorted(self.log_dir.glob("*.log")):
            for line in self._new_lines(path):
                if '"_aws"' not in line:
                    continue
                try:
                    document = json.loads(line)
                except ValueError:
                    continue
                for namespace, datum in metric_data(document):
                    batches.setdefault(namespace, []).append(datum)
        put = 0
        for namespace, data in batches.items():
            for start in range(0, len(data), 500):
                self.client.put_metric_data(Namespace=namespace, MetricData=data[start : start + 500])
                put += len(data[start : start + 500])
        self.forwarded += put
        return put

    def _new_lines(self, path: Path) -> list[str]:
        offset = self._offsets.get(path, 0)
        try:
            with path.open("rb") as stream:
                stream.seek(offset)
                data = stream.read()
        except OSError:
            return []
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next poll
        self._offsets[path] = offset + end
        return data[:end].decode("utf-8", "replace").splitlines()
