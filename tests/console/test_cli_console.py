"""``sosw console``: the CLI's own options and configuration, and its refusals in one line."""

from __future__ import annotations

import json

import pytest

from sosw import cli


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"labourers": {"alpha": {}}}))
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--host", "0.0.0.0"], "sosw: host: 0.0.0.0 is not a loopback address: add --allow-remote"),
        (["--host", "192.168.1.10"], "sosw: host: 192.168.1.10 is not a loopback address"),
        (["--refresh", "0"], "sosw: --refresh: expected a number of seconds >= 1"),
    ],
)
def test_console_refusals_are_one_line_and_nothing_listens(config_file, capsys, args, message):
    code = cli.main(["--config", str(config_file), "console", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(message) and err.count("\n") == 1


def test_console_without_a_stack_says_where_to_look(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--local", "console"]) == 1
    assert "no local stack" in capsys.readouterr().err
