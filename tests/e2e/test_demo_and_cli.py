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
    # The 40 reliable tasks were one job, made by the Scheduler Lambda, announced once when they all completed
    assert "event 'Job Finished' (source sosw): job demo-job, completed 40, dead 0, cancelled 0" in out
    assert "OK: job demo-job followed as one thing: 40 tasks, one end event" in out


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


# ---------------------------------------------------------------- jobs


def test_cli_job_submit_status_list_cancel(local_cli, capsys, tmp_path):
    lines = tmp_path / "files.jsonl"
    lines.write_text("\n".join(json.dumps({"file": f"f{i}.csv"}) for i in range(5)) + "\n")
    # Given a job submitted from a JSON Lines file of payloads
    code, out, err = run(capsys, "job", "submit", str(lines), "--labourer", "alpha", "--job-id", "files-1")
    assert (code, out) == (0, "files-1\n") and "5 task(s) for alpha" in err
    # Then its status shows the progress, the counts and the open tasks
    code, out, _ = run(capsys, "job", "status", "files-1")
    assert code == 0 and "0 of 5 closed" in out and "queued 5" in out and "time left unknown" in out
    code, out, _ = run(capsys, "job", "status", "files-1", "--json")
    assert json.loads(out)["total"] == 5
    assert run(capsys, "job", "list")[1].splitlines()[1].split()[:7] == [
        "files-1",
        "alpha",
        "running",
        "5",
        "-",
        "-",
        "-",
    ]
    # When it is cancelled, nothing running: every task is cancelled and the job ends, announced once
    code, out, _ = run(capsys, "job", "cancel", "files-1")
    assert code == 0 and "5 task(s) cancelled, 0 still running; state cancelled" in out
    assert [e["detail-type"] for e in local_cli.job_events()] == ["Job Cancelled"]
    listed = run(capsys, "job", "list", "--output", "jsonl")[1]
    assert [json.loads(line)["cancelled"] for line in listed.splitlines()] == [5]
    assert run(capsys, "job", "list")[1].splitlines()[1].split()[:7] == [
        "files-1",
        "alpha",
        "cancelled",
        "5",
        "0",
        "0",
        "5",
    ]
    code, _, err = run(capsys, "job", "cancel", "files-1")
    assert code == 1 and "has ended (cancelled)" in err


def test_cli_sosw_job_dry_run_previews_and_submit_creates_the_same(local_cli, capsys, tmp_path):
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"lambda_name": "alpha", "stores": ["a", "b", "c"], "isolate_stores": True}))
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"job_schema": {"chunkable_attrs": [["store", {}]]}}))  # sosw's Scheduler config
    code, out, _ = run(capsys, "job", "submit", str(job), "--job-schema", str(schema), "--dry-run")
    preview = sorted(out.splitlines())
    assert code == 0 and len(preview) == 3 and scan_all(local_cli.config)["tasks"] == []
    code, out, _ = run(capsys, "job", "submit", str(job), "--job-schema", str(schema), "--job-id", "stores")
    assert code == 0
    stored = sorted(
        json.dumps({**json.loads(t["payload"])}) for t in scan_all(local_cli.config)["tasks"] if t["job_id"] == "stores"
    )
    assert [json.loads(line) for line in preview] == [json.loads(line) for line in stored]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--labourer", "ghost"], "unknown labourer 'ghost'"),
        (
            ["--labourer", "alpha", "--tolerance", "150"],
            "tolerated_failure_percentage: expected a number from 0 to 100",
        ),
        (["--labourer", "alpha", "--job-id", "x y"], "job_id: expected"),
    ],
)
def test_cli_job_bad_input_is_one_clear_line_and_writes_nothing(local_cli, capsys, tmp_path, args, message):
    lines = tmp_path / "p.jsonl"
    lines.write_text('{"n": 1}\n')
    code, _out, err = run(capsys, "job", "submit", str(lines), *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert all(not items for items in scan_all(local_cli.config).values())


def test_cli_job_bad_files_name_the_problem_and_write_nothing(local_cli, capsys, tmp_path):
    empty, bad, job = tmp_path / "empty.jsonl", tmp_path / "bad.jsonl", tmp_path / "job.json"
    empty.write_text("\n")
    bad.write_text('{"n": 1}\n{"n": \n')
    job.write_text(json.dumps({"lambda_name": "alpha", "stores": ["a"], "isolate_stores": True, "period": "fortnight"}))
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"chunkable_attrs": [["store", {}]]}))
    cases = [
        (["job", "submit", str(empty), "--labourer", "alpha"], "payloads: the job makes no task"),
        (["job", "submit", str(bad), "--labourer", "alpha"], f"{bad}:2: not valid JSON"),
        (["job", "submit", str(job), "--job-schema", str(schema)], "period: unsupported period 'fortnight'"),
        (["job", "submit", str(job), "--job-schema", str(schema), "--dry-run"], "period: unsupported period"),
        (["job", "status", "nope"], "job_id: no job 'nope'"),
    ]
    for args, message in cases:
        code, out, err = run(capsys, *args)
        assert code == 2 and message in err and out == "", (args, err)
    assert all(not items for items in scan_all(local_cli.config).values())
