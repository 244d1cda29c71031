"""The Scheduler role: sosw's job event, an uploaded job file, its own continuation at the time limit (moto)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from sosw.errors import InvalidInputError
from sosw.job_scheduler import JobScheduler
from sosw.jobs import submit
from tests.conftest import scan_all

pytestmark = pytest.mark.parametrize("backend", ["moto"], indirect=True)

SCHEMA = {"chunkable_attrs": [["store", {}]]}
JOB = {"lambda_name": "alpha", "stores": ["a", "b", "c"], "isolate_stores": True}


class RecordingLambda:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return {"StatusCode": 202}


@pytest.fixture
def scheduler(make_manager) -> JobScheduler:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="jobs-bucket")
    return JobScheduler(
        make_manager(job_schema=SCHEMA), s3_client=s3, lambda_client=RecordingLambda(), function_name="sosw_scheduler"
    )


def s3_event(key: str, sequencer: str = "0A1") -> dict[str, Any]:
    """What EventBridge delivers for an upload (the stack's rule passes it on as it is)."""
    return {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": "jobs-bucket"}, "object": {"key": key, "etag": "e", "sequencer": sequencer}},
    }


def test_sosw_job_event_and_its_redelivery_make_one_job(scheduler, config):
    first = scheduler.handle(JOB)
    again = scheduler.handle(json.dumps(JOB))  # a redelivery (or sosw's JSON-text form)
    assert first == again and first["total"] == 3 and first["state"] == "running" and first["complete"]
    assert first["job_id"].startswith("sosw-") and len(scan_all(config)["tasks"]) == 3


def test_the_wrapped_event_chooses_the_job_id_and_the_tolerance(scheduler):
    result = scheduler.handle({"job": JOB, "job_id": "nightly", "tolerated_failure_percentage": 12.5})
    job = scheduler.tm.get_job("nightly")
    assert result["job_id"] == "nightly" and job["tolerated_failure_percentage"] == 12.5


def test_an_uploaded_job_file_is_one_job_however_often_its_event_comes(scheduler, config):
    body = json.dumps({"job": JOB, "tolerated_failure_percentage": 5})
    scheduler.s3.put_object(Bucket="jobs-bucket", Key="daily/stores.json", Body=body)
    first = scheduler.handle(s3_event("daily/stores.json"))
    assert scheduler.handle(s3_event("daily/stores.json")) == first
    assert scheduler.tm.get_job(first["job_id"])["tolerated_failure_percentage"] == 5
    # A new upload of the same key is a new job
    second = scheduler.handle(s3_event("daily/stores.json", sequencer="0A2"))
    assert second["job_id"] != first["job_id"] and len(scan_all(config)["tasks"]) == 6


def test_an_uploaded_file_of_payloads_runs_on_the_labourer_its_folder_names(scheduler, config):
    body = "\n".join(json.dumps({"n": i}) for i in range(4))
    scheduler.s3.put_object(Bucket="jobs-bucket", Key="alpha/batch.jsonl", Body=body)
    result = scheduler.handle(s3_event("alpha/batch.jsonl"))
    assert result["labourer_id"] == "alpha" and result["total"] == 4
    scheduler.s3.put_object(Bucket="jobs-bucket", Key="loose.jsonl", Body=body)
    with pytest.raises(InvalidInputError) as caught:
        scheduler.handle(s3_event("loose.jsonl"))
    assert caught.value.field == "key"
    assert len(scan_all(config)["tasks"]) == 4


def test_at_its_time_limit_it_stops_after_a_batch_and_continues_in_a_new_invocation(scheduler, config, monkeypatch):
    monkeypatch.setattr(submit, "CREATE_BATCH", 2)
    event = {"job": {**JOB, "stores": [f"s{i}" for i in range(7)]}, "job_id": "long"}
    # Given a run with no time left after its first batch
    result = scheduler.handle(event, remaining=lambda: 1.0)
    assert not result["complete"] and len(scan_all(config)["tasks"]) == 2
    # Then it invoked itself, asynchronously, with the job and its id
    (call,) = scheduler.lambda_client.calls
    assert call["FunctionName"] == "sosw_scheduler" and call["InvocationType"] == "Event"
    continuation = json.loads(call["Payload"])
    assert continuation["job_id"] == "long"
    # And that invocation goes on from the cursor to the end
    assert scheduler.handle(continuation)["complete"]
    assert sorted(t["task_id"] for t in scan_all(config)["tasks"]) == sorted(f"long.{i}" for i in range(7))


def test_bad_job_events_name_the_field_and_write_nothing(scheduler, config):
    for event, field in (
        ([1, 2], "job"),
        ({"stores": ["a"]}, "lambda_name"),
        ({"job": {**JOB, "period": "someday"}}, "period"),
        ({"job": JOB, "tolerated_failure_percentage": 250}, "tolerated_failure_percentage"),
    ):
        with pytest.raises(InvalidInputError) as caught:
            scheduler.handle(event)
        assert caught.value.field == field, event
    assert all(not items for items in scan_all(config).values())
