"""sosw.metrics: all of a labourer's figures of a run in one EMF document, under the labourer_id dimension alone."""

from __future__ import annotations

import json

import pytest

from sosw.metrics import put_labourer_metric, put_labourer_metrics


@pytest.fixture(autouse=True)
def metrics_on(monkeypatch):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "worker")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "sosw-test")


def test_figures_of_a_run_go_out_as_one_document(capsys):
    put_labourer_metrics("resize", {"worker_completed": 1, "skipped": None}, seconds={"worker_duration": 0.25})
    [line] = capsys.readouterr().out.splitlines()
    doc = json.loads(line)
    [directive] = doc["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "sosw-test" and directive["Dimensions"] == [["labourer_id"]]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {
        "worker_completed": "Count",
        "worker_duration": "Seconds",
    }
    assert doc["labourer_id"] == "resize" and doc["worker_duration"] == [0.25] and "skipped" not in doc


def test_nothing_measured_writes_nothing_and_a_lone_figure_is_one_document(capsys):
    put_labourer_metrics("resize", {"queue_length": None})
    assert capsys.readouterr().out == ""
    put_labourer_metric("worker_skipped", 1, "resize")
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["worker_skipped"] == [1.0]
