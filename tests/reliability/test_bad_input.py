"""Bad input across the public API and the CLI: each case raises a clear error naming the field, and
writes nothing (every table is scanned afterwards). Stack configuration cases are in tests/infra.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from sosw import cli
from sosw.errors import SoswError
from sosw.labourer import Labourer
from sosw.managers.task import TaskManager
from sosw.worker_assistant import WorkerAssistant
from tests.conftest import scan_all

pytestmark = pytest.mark.integration

BIG = "x" * 400_000

CASES: list[tuple[str, Callable[[TaskManager, dict[str, Any]], Any], str]] = [
    (
        "payload not JSON-serialisable",
        lambda tm, t: tm.create_task(tm.get_labourer("alpha"), payload={"f": object()}),
        "payload",
    ),
    (
        "payload with NaN",
        lambda tm, t: tm.create_task(tm.get_labourer("alpha"), payload={"x": float("nan")}),
        "payload",
    ),
    ("oversized payload", lambda tm, t: tm.create_task(tm.get_labourer("alpha"), payload={"b": BIG}), "limit"),
    ("binary payload", lambda tm, t: tm.create_tasks(tm.get_labourer("alpha"), [{"b": b"\x00\x01"}]), "payloads[0]"),
    ("payloads not dicts", lambda tm, t: tm.create_tasks(tm.get_labourer("alpha"), [{}, 5]), "payloads[1]"),
    ("unknown labourer", lambda tm, t: tm.create_task(Labourer(id="ghost"), payload={}), "ghost"),
    ("labourer not a Labourer", lambda tm, t: tm.create_task("alpha", payload={}), "labourer"),
    ("strict forbids task_id", lambda tm, t: tm.create_task(tm.get_labourer("alpha"), task_id="mine"), "task_id"),
    (
        "repeated task id",
        lambda tm, t: tm.create_task(tm.get_labourer("alpha"), strict=False, task_id=t["task_id"]),
        "already exists",
    ),
    (
        "queued greenfield in the invoked range",
        lambda tm, t: tm.create_task(tm.get_labourer("alpha"), strict=False, greenfield=int(tm.clock.now())),
        "greenfield",
    ),
    ("negative delay", lambda tm, t: tm.create_delayed_task(tm.get_labourer("alpha"), {}, delay=-1), "delay"),
    ("delay not a number", lambda tm, t: tm.create_delayed_task(tm.get_labourer("alpha"), {}, delay="soon"), "delay"),
    ("negative retry delay", lambda tm, t: tm.move_task_to_retry_table(t, -5), "wanted_delay"),
    ("negative cnt", lambda tm, t: tm.get_next_for_labourer(tm.get_labourer("alpha"), cnt=-1), "cnt"),
    ("task forged for another labourer", lambda tm, t: tm.mark_task_invoked(tm.get_labourer("beta"), t), "labourer_id"),
    (
        "forged dict, stored task of another labourer",
        lambda tm, t: tm.mark_task_invoked(tm.get_labourer("beta"), {**t, "labourer_id": "beta"}),
        "belongs to",
    ),
    ("report for a stale attempt", lambda tm, t: _refused(tm.mark_task_completed(t["task_id"], attempt=9)), "stale"),
    ("attempt of the wrong type", lambda tm, t: tm.mark_task_completed(t["task_id"], attempt="1"), "attempt"),
    ("result too large", lambda tm, t: tm.mark_task_completed(t["task_id"], result={"b": "x" * 70_000}), "result"),
    ("result with a huge number", lambda tm, t: tm.mark_task_failed(t["task_id"], result={"n": 10**40}), "result"),
    ("negative cap", lambda tm, t: Labourer(id="x", max_simultaneous_invocations=-1), "max_simultaneous_invocations"),
    ("malformed ARN", lambda tm, t: Labourer(id="x", arn="arn:aws:s3:::bucket"), "arn"),
    ("unknown labourer setting", lambda tm, t: Labourer.from_config("x", {"max_atempts": 3}), "unknown setting"),
    (
        "unknown setting in the config",
        lambda tm, t: TaskManager({"labourers": {"x": {"max_atempts": 3}}}).get_labourers(),
        "max_atempts",
    ),
    ("unknown labourer looked up", lambda tm, t: tm.create_task(tm.get_labourer("ghost"), payload={}), "labourer"),
    ("negative step in config", lambda tm, t: TaskManager({"greenfield_task_step": -1}), "greenfield_task_step"),
    (
        "assistant: unknown action",
        lambda tm, t: WorkerAssistant(tm).handle({"action": "drop", "task_id": "x"}),
        "action",
    ),
    ("assistant: not an object", lambda tm, t: WorkerAssistant(tm).handle(["x"]), "event"),
]


def _refused(result: Any) -> None:
    if not result:
        raise SoswError(f"refused: {result.outcome.value}")


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_bad_input_is_refused_clearly_and_writes_nothing(manager, config):
    alpha = manager.register_labourers()[0]
    queued = manager.create_task(alpha, payload={"keep": True})
    before = scan_all(config)
    refused = []
    for name, call, field in CASES:
        with pytest.raises((SoswError, ValueError, RuntimeError)) as info:
            call(manager, queued)
        assert field in str(info.value), f"{name}: {info.value}"
        refused.append(name)
    assert scan_all(config) == before, "a refused call wrote something"
    print(f"\nbad input: {len(refused)} API cases refused, nothing written")
    assert len(refused) >= 20


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "ghost", "--payload", "{}"], "unknown labourer"),
        (["create", "alpha", "--payload", "{oops"], "not valid JSON"),
        (["create", "alpha", "--payload", '"text"'], "expected a JSON object"),
        (["create", "alpha", "--file", "missing.jsonl"], "missing.jsonl"),
        (["create", "alpha", "--payload", "{}", "--delay", "-1"], "delay"),
    ],
)
def test_cli_bad_input(tmp_path, monkeypatch, capsys, args, message):
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps({"labourers": {"alpha": {}}}))
    monkeypatch.chdir(tmp_path)
    code = cli.main(["--config", str(config_file), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
