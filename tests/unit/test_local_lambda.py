"""The local Lambda endpoint's record: when each asynchronous event was accepted, and how long functions ran."""

from __future__ import annotations

import json
import time

import boto3

from sosw.local.lambda_server import FunctionSpec, LocalLambda

HANDLER = """
import time


def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"ok": True}
"""


def test_deliveries_are_timestamped_and_run_time_is_summed(tmp_path):
    (tmp_path / "app.py").write_text(HANDLER)
    with LocalLambda([FunctionSpec("napper", str(tmp_path), concurrency=1)]) as lam:
        client = boto3.client(
            "lambda", endpoint_url=lam.url, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
        )
        before = time.time()
        client.invoke(FunctionName="napper", InvocationType="Event", Payload=json.dumps({"sleep": 0.2}))
        after = time.time()
        client.invoke(FunctionName="napper", Payload=json.dumps({"sleep": 0.1}))  # synchronous: not a delivery
        assert lam.wait_idle(10)

    assert lam.deliveries["napper"] == [{"sleep": 0.2}]
    assert len(lam.delivery_times["napper"]) == 1
    assert before <= lam.delivery_times["napper"][0] <= after
    assert lam.runs["napper"] == 2
    assert 0.3 <= lam.run_seconds["napper"] < 2.0
    # And when each invocation ended, in order: the asynchronous one (after its 0.2 s), then the synchronous one
    ended = lam.finish_times["napper"]
    assert len(ended) == 2 and lam.delivery_times["napper"][0] + 0.2 <= ended[0] <= ended[1]
