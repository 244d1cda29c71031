"""The local Lambda endpoint re-stages a function's code folder when it changes: the next invocation runs it."""

from __future__ import annotations

import json
import os
import time

import boto3
import pytest

from sosw.local.lambda_server import FunctionSpec, LocalLambda, stage_code
from sosw.local.stub import parse_behaviour

HANDLER = """
import os
VERSION = {version!r}

def handler(event, context):
    return {{"version": VERSION, "pid": os.getpid()}}
"""


def _invoke(client, name: str) -> dict:
    response = client.invoke(FunctionName=name, InvocationType="RequestResponse", Payload=b"{}")
    return json.loads(response["Payload"].read())


def test_an_edit_takes_effect_at_the_next_invocation_in_a_fresh_process(tmp_path):
    # Given a function running from a staged copy of its code folder, warm
    source = tmp_path / "greeter"
    source.mkdir()
    (source / "app.py").write_text(HANDLER.format(version="v1"))
    staged = tmp_path / "staged" / "greeter"
    stage_code(source, staged)
    spec = FunctionSpec("greeter", str(staged), source_dir=str(source), concurrency=1)
    with LocalLambda([spec]) as lam:
        client = boto3.client("lambda", endpoint_url=lam.url)
        first = _invoke(client, "greeter")
        assert first["version"] == "v1" and _invoke(client, "greeter")["pid"] == first["pid"]  # warm
        # When the source changes (same size: only its time tells, and file times are coarse, so a second on)
        (source / "app.py").write_text(HANDLER.format(version="v2"))
        os.utime(source / "app.py", ns=(time.time_ns() + 10**9,) * 2)
        # Then the next invocation runs the new code, in a new process, from a re-staged copy
        second = _invoke(client, "greeter")
        assert second["version"] == "v2" and second["pid"] != first["pid"]
        assert "v2" in (staged / "app.py").read_text()
        assert lam.counts["greeter"]["code_reloaded"] == 1
        # and an unchanged folder is not staged again
        assert _invoke(client, "greeter")["pid"] == second["pid"]
        assert lam.counts["greeter"]["code_reloaded"] == 1


@pytest.mark.parametrize(
    ("text", "parsed"), [("completes", ("completes", 0.0)), ("fails", ("fails", 0.0)), ("sleeps:2.5", ("sleeps", 2.5))]
)
def test_stub_behaviours(text, parsed):
    assert parse_behaviour(text) == parsed


@pytest.mark.parametrize("text", ["", "sleeps", "sleeps:-1", "completed", "sleeps:x"])
def test_a_bad_stub_behaviour_names_what_is_accepted(text):
    with pytest.raises(ValueError, match=r"expected completes\|fails\|sleeps:SECONDS"):
        parse_behaviour(text)
