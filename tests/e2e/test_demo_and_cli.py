"""The demo at CI scale, and the CLI against the local stack (bad input included)."""

from __future__ import annotations

import itertools
import json
import os

import pytest
from rich.console import Console

from sosw import cli
from sosw.local.demo import flaky_payloads, run_demo
from sosw.local.stack import LocalStack, WorkerSpec
from tests.conftest import scan_all

pytestmark = pytest.mark.integration
_prefix = itertools.count()


def test_demo_closes_every_task_as_expected(dynamodb_local, capsys):
    console = Console(width=200, force_terminal=False)
    code = run_demo(60, speed=120, timeout=120, dynamodb_endpoint=dynamodb_local.endpoint_url, console=console)
    out = capsys.readouterr().out
    assert code == 0, out
    # 40 reliable tasks and 20 flaky ones, of which the failure settings make 2 dead (1 always fails, 1 times out)
    dead = sum(end == "dead" for _, end, _ in flaky_payloads(20))
    assert dead == 2
    assert f"exactly once as expected ({60 - dead} completed, {dead} dead, one notification" in out


@pytest.fixture
def local_cli(dynamodb_local, tmp_path, monkeypatch):
    workers = [WorkerSpec("alpha", {"max_simultaneous_invocations": 2, "duration": 3, "cooldown": 2})]
    with LocalStack(
        workers,
        dynamodb_endpoint=dynamodb_local.endpoint_url,
        table_prefix=f"cli{os.getpid()}_{next(_prefix)}_",
        log_dir=tmp_path / "logs",
    ) as stack:
        monkeypatch.chdir(tmp_path)
        state = tmp_path / cli.STATE_FILE
        state.parent.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        state.write_text(json.dumps({"config": stack.config, "env": env}))
        yield stack


def run(capsys, *args):
    code = cli.main(["--local", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_create_status_show_cancel_prioritise(local_cli, capsys, tmp_path):
    code, out, _ = run(capsys, "create", "alpha", "--payload", '{"n": 1}')
    assert code == 0
    first = out.strip()
    lines = tmp_path / "tasks.jsonl"
    lines.write_text("\n".join(json.dumps({"n": i}) for i in range(5)) + "\n")
    assert run(capsys, "create", "alpha", "--file", str(lines))[:2] == (0, "created 5 task(s) for alpha\n")
    code, out, _ = run(capsys, "status")
    assert code == 0 and "alpha" in out and "6" in out
    code, out, _ = run(capsys, "show", first, "--output", "json")
    assert code == 0 and json.loads(out)["where"] == "open"
    tasks = scan_all(local_cli.config)["tasks"]
    last = max(tasks, key=lambda t: t["greenfield"])["task_id"]
    assert run(capsys, "prioritise", last)[0] == 0
    tm = local_cli.task_manager()
    assert tm.get_next_for_labourer(tm.get_labourer("alpha"), only_ids=True) == [last]
    assert run(capsys, "cancel", first)[0] == 0
    code, out, _ = run(capsys, "dead")
    assert code == 0 and first in out and "Cancelled" in out
    code, out, _ = run(capsys, "redrive", "--error", "Cancelled")
    assert code == 0 and "redrove 1 of 1" in out
    assert tm.find_task(first)[0] == "open"


def test_cli_task_id_is_idempotent(local_cli, capsys):
    assert run(capsys, "create", "alpha", "--payload", "{}", "--task-id", "job-1")[:2] == (0, "job-1\n")
    code, out, _ = run(capsys, "create", "alpha", "--payload", '{"x": 2}', "--task-id", "job-1")
    assert code == 0 and "already exists" in out
    assert len(scan_all(local_cli.config)["tasks"]) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "ghost", "--payload", "{}"], "unknown labourer 'ghost'"),
        (["create", "alpha", "--payload", "{not json"], "--payload: not valid JSON"),
        (["create", "alpha", "--payload", "[1]"], "--payload: expected a JSON object"),
        (["create", "alpha", "--payload", "{}", "--delay", "-5"], "delay"),
        (["show", "nope"], "not found"),
        (["cancel", "nope"], "not queued"),
    ],
)
def test_cli_bad_input_is_one_clear_line_and_writes_nothing(local_cli, capsys, args, message):
    code, _out, err = run(capsys, *args)
    assert code in (1, 2) and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    tables = scan_all(local_cli.config)
    assert tables["tasks"] == [] and tables["retry"] == []


def test_cli_malformed_json_line_names_the_line_and_creates_nothing(local_cli, capsys, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"ok": 1}\n{"ok": 2}\n{"broken": \n')
    code, _, err = run(capsys, "create", "alpha", "--file", str(path))
    assert code == 2 and f"{path}:3: not valid JSON" in err
    assert scan_all(local_cli.config)["tasks"] == []


def test_cli_without_a_stack_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "status")
    assert code == 1 and "no local stack" in err


def test_local_stack_is_the_synthesized_stack(tmp_path):
    """Tables, functions, destinations and schedules of the demo come from the template the CDK app writes."""
    from sosw.local.demo import DEMO_CONTEXT
    from sosw.local.template import load, synthesize
    from sosw.schema import table_schemas

    spec = load(synthesize(tmp_path / "cdk.out", DEMO_CONTEXT))
    # the local tables are the template's, and they match the one schema definition
    expected = {
        s.create_table_kwargs()["TableName"]: s.create_table_kwargs() for s in table_schemas(spec.config).values()
    }
    for table in spec.tables:
        want = expected[table["TableName"]]
        assert table["KeySchema"] == want["KeySchema"]
        assert sorted(map(str, table["AttributeDefinitions"])) == sorted(map(str, want["AttributeDefinitions"]))
        for kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            assert [(i["IndexName"], i["KeySchema"]) for i in table.get(kind, [])] == [
                (i["IndexName"], i["KeySchema"]) for i in want.get(kind, [])
            ]
    assert len(spec.tables) == len(expected)
    workers = {f.name: f for f in spec.functions if f.role == "worker"}
    assert set(workers) == {"demo_reliable", "demo_flaky"}
    assert all(f.on_failure == spec.function("failure_handler").name for f in workers.values())
    assert workers["demo_flaky"].timeout == DEMO_CONTEXT["workers"]["flaky"]["timeout"]
    assert spec.schedules == {spec.function("orchestrator").name: 60, spec.function("scavenger").name: 60}
    assert (tmp_path / "cdk.out").exists() and all(
        (tmp_path / "cdk.out" / f.code_dir.rsplit("/", 1)[-1] / "app.py").is_file() for f in spec.functions
    )
