"""The CLI's output layer: tables that fit 80 columns, plain text off a terminal, JSON that keeps its schema."""

from __future__ import annotations

import io
import json
import re
import time
from pathlib import Path

import jsonschema
import pytest
from moto import mock_aws

from sosw import aws, cli
from sosw.console.output import Column, Output, render_table
from sosw.console.views import DEAD_COLUMNS, STATUS_COLUMNS, dead_row, status_row, watch_status
from sosw.local.tables import create_tables, prefixed_config
from sosw.managers.task import TaskManager

SCHEMAS = Path(cli.__file__).parent / "console" / "schemas"
BOX = re.compile(r"[\u2500-\u257f]")
ANSI = re.compile(r"\x1b\[")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def schema(name: str) -> dict:
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def line_schema(name: str, definition: str) -> dict:
    """The schema of one jsonl line: a definition of the document's schema."""
    return {"$defs": schema(name)["$defs"], "$ref": f"#/$defs/{definition}"}


def counts(n: int, age: float | None = 12.0) -> dict:
    return {
        "queued": n,
        "running": 7,
        "expired": 0,
        "failed": 3,
        "waiting": 12,
        "completed": 1,
        "closed_completed": n * 10,
        "dead": 4,
        "oldest_queued_age": age,
        "complete": True,
    }


ROWS = [status_row("example_worker", counts(125_000)), status_row("resize_images", counts(3, None))]


def test_status_fits_80_columns_with_every_figure_and_no_ellipsis():
    # Given realistic labourer names and six-digit counts
    lines, header = render_table(ROWS, STATUS_COLUMNS, 80)
    # Then every line fits, the header is a row of (short) headers, and every figure is there in full
    assert header and all(len(line) <= 80 for line in lines)
    assert "…" not in "\n".join(lines)
    assert lines[0].split() == ["labourer", "queued", "run", "exp", "fail", "wait", "cmpl", "arch", "dead", "oldest"]
    assert lines[1].split() == ["example_worker", "125000", "7", "0", "3", "12", "1", "1250000", "4", "12", "s"]
    assert lines[2].split()[:2] == ["resize_images", "3"] and lines[2].endswith("-")


def test_a_wide_terminal_gets_the_full_headers():
    lines, _ = render_table(ROWS, STATUS_COLUMNS, 120)
    assert "running" in lines[0] and "oldest queued" in lines[0]


def test_rows_too_wide_for_80_columns_stack_their_figures_under_the_labourer():
    # Given a labourer whose name alone takes most of the width
    long_name = "nightly_reconciliation_of_every_partner_invoice_in_eu_west_1"
    lines, header = render_table([status_row(long_name, counts(987_654_321))], STATUS_COLUMNS, 80)
    # Then it is a block: the name, then "header value" pairs, every line within 80 columns
    assert not header and lines[0] == long_name
    assert all(len(line) <= 80 for line in lines)
    text = " ".join(lines[1:])
    for pair in ("queued 987654321", "running 7", "waiting 12", "archived 9876543210", "dead 4", "oldest queued 12 s"):
        assert pair in text


def test_off_a_terminal_the_default_is_plain_text_without_box_drawing_or_colour():
    stream = io.StringIO()
    Output("table", stream).rows("labourers", ROWS, STATUS_COLUMNS)
    text = stream.getvalue()
    assert not BOX.search(text) and not ANSI.search(text)
    assert text.splitlines()[0].startswith("labourer")
    # and a script can read it with split()
    assert [line.split()[0] for line in text.splitlines()[1:]] == ["example_worker", "resize_images"]


def test_on_a_terminal_the_header_is_bold_and_ruled():
    stream = Terminal()
    Output("table", stream, width=80).rows("labourers", ROWS, STATUS_COLUMNS)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("\x1b[1m") and set(lines[1]) == {"─"}
    assert all(len(ANSI.sub("", line).replace("[1m", "").replace("[0m", "")) <= 80 for line in lines)


def test_dead_tasks_cut_the_error_message_not_the_task_id():
    task = {
        "task_id": "5b0c3f8e9d6a4f21a1d2c3b4e5f60718",
        "labourer_id": "flaky",
        "attempts": 3,
        "closed_at": time.time() - 3 * 86400 - 60,
        "last_error": {"type": "RuntimeError", "message": "failing on purpose " * 10},
    }
    lines, header = render_table([dead_row(task)], DEAD_COLUMNS, 80)
    assert header and all(len(line) <= 80 for line in lines)
    assert lines[0].split() == ["task", "labourer", "att", "closed", "error"]
    assert task["task_id"] in lines[1] and " d  RuntimeError: failing" in lines[1]
    assert lines[1].endswith("…") and len(lines[1]) == 80
    assert dead_row(task)["closed_at"].endswith("+00:00")


def test_a_table_column_never_cut_keeps_its_value_by_stacking():
    columns = (Column("id", align="left"), Column("value", align="left"))
    lines, header = render_table([{"id": "x" * 70, "value": "y" * 30}], columns, 80)
    assert not header and "y" * 30 in lines[1]


# ---------------------------------------------------------------------------------------- against moto


@pytest.fixture
def tm():
    with mock_aws():
        config = prefixed_config("out_", {"labourers": {"alpha": {"duration": 60}, "beta": {"duration": 60}}})
        create_tables(aws.dynamodb_client(), config)
        yield TaskManager(config)


def test_status_json_and_jsonl_match_the_schema(tm, monkeypatch, capsys):
    # Given queued tasks of two labourers
    tm.create_tasks(tm.get_labourer("alpha"), [{"n": i} for i in range(3)])
    monkeypatch.setattr(cli, "_config", lambda args: tm.config)
    # When status is asked for as json, then as jsonl
    assert cli.main(["--config", "x", "status", "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert cli.main(["--config", "x", "status", "--output", "jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    # Then both have the published shape, with the figures
    jsonschema.validate(doc, schema("status"))
    row_schema = line_schema("status", "labourer")
    for line in lines:
        jsonschema.validate(line, row_schema)
    assert {r["labourer"]: r["queued"] for r in doc["labourers"]} == {"alpha": 3, "beta": 0}
    ages = ("oldest_queued_age",)  # read a moment apart
    assert [{k: v for k, v in r.items() if k not in ages} for r in lines] == [
        {k: v for k, v in r.items() if k not in ages} for r in doc["labourers"]
    ]


def test_dead_and_show_json_match_their_schemas(tm, monkeypatch, capsys):
    [task_id] = tm.create_tasks(tm.get_labourer("beta"), [{"n": 1}])
    assert tm.cancel_task(task_id)
    monkeypatch.setattr(cli, "_config", lambda args: tm.config)
    assert cli.main(["--config", "x", "dead", "--output", "json"]) == 0
    dead = json.loads(capsys.readouterr().out)
    jsonschema.validate(dead, schema("dead"))
    assert [t["task_id"] for t in dead["dead_tasks"]] == [task_id]
    assert dead["dead_tasks"][0]["error_type"] == "Cancelled"
    assert cli.main(["--config", "x", "show", task_id, "--output", "jsonl"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    jsonschema.validate(json.loads(out), schema("show"))


def test_show_for_people_lists_the_fields_with_readable_times(tm, monkeypatch, capsys):
    [task_id] = tm.create_tasks(tm.get_labourer("alpha"), [{"n": 1}])
    monkeypatch.setattr(cli, "_config", lambda args: tm.config)
    assert cli.main(["--config", "x", "show", task_id]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"task {task_id} (alpha): open"
    assert any(re.fullmatch(r"  created_at: \d{4}-\d\d-\d\dT.*\+00:00 \(\d+(\.\d+)?\)", line) for line in lines)
    assert lines[-1] == '  payload: {"n": 1}'


def test_watch_refreshes_with_completions_per_minute_until_ctrl_c(tm):
    # Given four queued tasks, and a watch whose pauses complete two tasks and last 30 s each
    alpha = tm.get_labourer("alpha")
    tm.create_tasks(alpha, [{"n": i} for i in range(4)])
    tm.open_run_window()
    clock = {"now": 1000.0}
    refreshes = []

    def sleep(seconds: float) -> None:
        refreshes.append(seconds)
        if len(refreshes) == 3:
            raise KeyboardInterrupt
        tm.open_run_window()
        for task in tm.get_next_for_labourer(tm.get_labourer("alpha"), cnt=2):
            claimed = tm.mark_task_invoked(tm.get_labourer("alpha"), task)
            assert tm.mark_task_completed(claimed["task_id"], attempt=1)
        clock["now"] += 30

    stream = io.StringIO()
    code = watch_status(
        tm, Output("jsonl", stream), interval=30, sleep=sleep, monotonic=lambda: clock["now"], wall=lambda: 0.0
    )
    # Then Ctrl-C ends it cleanly, after three refreshes of both labourers
    assert code == 0 and refreshes == [30, 30, 30]
    rows = [json.loads(line) for line in stream.getvalue().splitlines()]
    row_schema = line_schema("status", "labourer")
    for row in rows:
        jsonschema.validate(row, row_schema)
    alpha_rates = [r["completed_per_minute"] for r in rows if r["labourer"] == "alpha"]
    # none yet, then 2 tasks in 30 s, then 4 in 60 s: 4 a minute
    assert alpha_rates == [None, 4.0, 4.0]
    assert [r["completed_per_minute"] for r in rows if r["labourer"] == "beta"] == [None, 0.0, 0.0]


def test_watch_on_a_terminal_redraws_in_place(tm):
    stream = Terminal()

    def sleep(seconds: float) -> None:
        raise KeyboardInterrupt

    assert watch_status(tm, Output("table", stream, width=80), sleep=sleep) == 0
    text = stream.getvalue()
    assert text.startswith("\x1b[H\x1b[J") and "completed/min" not in text  # short headers at 80 columns
    assert "/min" in text and all(len(ANSI.sub("", line)) <= 90 for line in text.splitlines())


def test_job_status_and_job_list_take_every_output_format(tm, monkeypatch, capsys):
    # Given a job of three tasks and a second, cancelled one
    tm.create_job("alpha", [{"n": i} for i in range(3)], job_id="files-1")
    tm.create_job("beta", [{"n": 1}], job_id="other-2")
    tm.cancel_job("other-2")
    monkeypatch.setattr(cli, "_config", lambda args: tm.config)
    # When job status is asked for as json and as jsonl (one line)
    assert cli.main(["--config", "x", "job", "status", "files-1", "--output", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert cli.main(["--config", "x", "job", "status", "files-1", "-o", "jsonl"]) == 0
    out = capsys.readouterr().out
    # Then both have the published shape and the exact counts
    assert out.count("\n") == 1
    for job in (doc, json.loads(out)):
        jsonschema.validate(job, schema("job"))
        assert (job["total"], job["closed"], job["open"], job["state"]) == (3, 0, 3, "running")
    # And job list, as json and jsonl, one job a line, newest first, with the end counts of an ended job
    assert cli.main(["--config", "x", "job", "list", "--output", "json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    jsonschema.validate(listing, schema("jobs"))
    assert [j["job_id"] for j in listing["jobs"]] == ["other-2", "files-1"]
    assert listing["jobs"][0]["cancelled"] == 1 and listing["jobs"][1]["cancelled"] is None
    assert cli.main(["--config", "x", "job", "list", "--output", "jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for line in lines:
        jsonschema.validate(line, line_schema("jobs", "job"))
    assert lines == listing["jobs"]
    # And for people, off a terminal: plain text within 80 columns
    assert cli.main(["--config", "x", "job", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["job", "labourer", "state", "total", "completed", "dead", "cancelled", "created"]
    assert all(len(line) <= 80 for line in table) and not BOX.search("".join(table))
    assert table[1].split()[:7] == ["other-2", "beta", "cancelled", "1", "0", "0", "1"]
    assert table[2].split()[:7] == ["files-1", "alpha", "running", "3", "-", "-", "-"]
    assert cli.main(["--config", "x", "job", "status", "files-1"]) == 0
    text = capsys.readouterr().out
    assert "0 of 3 closed" in text and not BOX.search(text) and all(len(line) <= 80 for line in text.splitlines())
