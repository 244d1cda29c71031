"""The README's examples run as given: its TaskManager snippet creates the task, its cdk.json entry is valid.

(Its worker's code is the one docs/howto/add-a-worker.md gives; tests/e2e/test_add_a_worker.py runs it.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from moto import mock_aws

from infra.config import StackConfig, load_cdk_json_context
from sosw import aws
from sosw.local.tables import create_tables

README = Path(__file__).resolve().parents[2] / "README.md"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


def test_the_readme_taskmanager_snippet_creates_the_task():
    (worker, snippet) = _blocks("python")
    assert "class ResizeImages(Worker)" in worker
    with mock_aws():
        # Given the tables a TaskManager with sosw's default names uses (an empty account)
        create_tables(aws.dynamodb_client())
        # When the README's snippet runs
        scope: dict = {}
        exec(compile(snippet, str(README), "exec"), scope)
        # Then the task is queued for its labourer, with its payload
        tm = scope["tm"]
        (task,) = tm.get_next_for_labourer(tm.get_labourer("resize_images"), 10)
        assert task["payload"] == {"key": "cat.png"}


def test_the_readme_cdk_json_entry_is_a_valid_worker():
    # Given cdk.json as shipped, with the README's worker entry
    (entry,) = _blocks("json")
    context = dict(load_cdk_json_context()["sosw"])
    context["workers"] = json.loads("{" + entry + "}")
    # When the stack's config reader takes it (the code folder must exist: the shipped example's stands in)
    context["workers"]["resize_images"]["code"] = "lambdas/worker"
    config = StackConfig.from_dict(context)
    # Then it is one created worker with the README's cap and attempts
    (worker,) = config.workers
    assert worker.name == "resize_images" and not worker.imported
    assert worker.settings["max_simultaneous_invocations"] == 20 and worker.settings["max_attempts"] == 4
