"""The local stack's EMF forwarding: a function's metric lines become CloudWatch metrics, as on AWS."""

from __future__ import annotations

import contextlib
import datetime
import io

import boto3
from moto import mock_aws

from sosw.local.emf import EmfForwarder, metric_data
from sosw.metrics import put_labourer_metrics


def emf_line(monkeypatch, labourer: str, completed: int) -> str:
    """What a worker prints: Powertools' own EMF document."""
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "sosw")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        put_labourer_metrics(labourer, {"worker_completed": completed}, seconds={"worker_duration": 0.25})
    return out.getvalue()


def test_a_powertools_document_gives_each_figure_with_its_dimension(monkeypatch):
    import json

    data = list(metric_data(json.loads(emf_line(monkeypatch, "resize", 2))))
    names = {d["MetricName"]: (ns, d["Value"], d["Dimensions"], d["Unit"]) for ns, d in data}
    assert names["worker_completed"] == ("sosw", 2.0, [{"Name": "labourer_id", "Value": "resize"}], "Count")
    assert names["worker_duration"][1:] == (0.25, [{"Name": "labourer_id", "Value": "resize"}], "Seconds")
    assert list(metric_data({"message": "Task completed"})) == []


def test_the_lines_of_the_log_files_reach_cloudwatch_once(monkeypatch, tmp_path):
    # Given a function's log file with two EMF lines among its other lines, the last one still being written
    log = tmp_path / "resize.log"
    log.write_text('{"message": "Task completed"}\n' + emf_line(monkeypatch, "resize", 1) + "not json\n")
    with mock_aws():
        cloudwatch = boto3.client("cloudwatch", region_name="us-east-1")
        forwarder = EmfForwarder(tmp_path, cloudwatch)
        # When it is polled, and polled again after more lines came
        assert forwarder.poll() == 2
        with log.open("a") as stream:
            stream.write(emf_line(monkeypatch, "resize", 1) + '{"_aws": {"Timestamp": 1')
        assert forwarder.poll() == 2 and forwarder.poll() == 0
        # Then CloudWatch has both completions, and each once
        now = datetime.datetime.now(tz=datetime.UTC)
        stats = cloudwatch.get_metric_statistics(
            Namespace="sosw",
            MetricName="worker_completed",
            Dimensions=[{"Name": "labourer_id", "Value": "resize"}],
            StartTime=now - datetime.timedelta(minutes=5),
            EndTime=now + datetime.timedelta(minutes=1),
            Period=600,
            Statistics=["Sum"],
        )
        assert sum(p["Sum"] for p in stats["Datapoints"]) == 2
