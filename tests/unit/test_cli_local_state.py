"""``sosw --local`` against a state file left by a local stack that is gone: one line, and the file goes."""

from __future__ import annotations

import json
import subprocess
import sys

from sosw import cli
from sosw.local.dynamodb_local import free_port


def _gone_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _write_state(tmp_path, **state):
    path = tmp_path / cli.STATE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    env = {"AWS_ENDPOINT_URL_LAMBDA": f"http://127.0.0.1:{free_port()}"}
    path.write_text(json.dumps({"config": {}, "env": env, **state}))
    return path


def test_a_state_file_whose_process_is_gone_says_no_stack_runs_in_one_line(tmp_path, monkeypatch, capsys):
    # Given the state file of a local stack whose process ended without removing it (kill -9, a crash)
    monkeypatch.chdir(tmp_path)
    path = _write_state(tmp_path, pid=_gone_pid())
    # When a --local command runs
    code = cli.main(["--local", "status"])
    # Then it says in one line that no local stack is running and how to start one, and removes the file
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1
    assert "no local stack is running" in err and "start one with `sosw local`" in err
    assert "EndpointConnectionError" not in err
    assert not path.exists()


def test_a_state_file_whose_endpoint_is_closed_is_stale_too(tmp_path, monkeypatch, capsys):
    # Given a state file of an older format (no pid) whose Lambda endpoint nobody listens on
    monkeypatch.chdir(tmp_path)
    _write_state(tmp_path)
    # When a --local command runs, then the same one line
    assert cli.main(["--local", "show", "some-task"]) == 1
    assert "no local stack is running" in capsys.readouterr().err


def test_without_a_state_file_it_says_how_to_start_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--local", "dead"]) == 1
    assert "no local stack: start one with `sosw local`" in capsys.readouterr().err
