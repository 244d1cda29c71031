"""The README's "Add a worker", followed in a copy of the project up to the deploy (which stays out).

A new worker folder and its cdk.json entry; ``sosw local`` in the background (with a ``-c`` override,
an adopted table, and imported workers, one stubbed); ``sosw --local create``; ``status --output json``
until it is done; ``show ID --logs`` with the worker's own line; an edit of the worker picked up by the
next task; then SIGTERM, which stops the stack and its processes and removes the state file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jsonschema
import pytest

from sosw import cli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = Path(cli.__file__).parent / "console" / "schemas"
GREETER = """from sosw.worker import Worker


class Greeter(Worker):
    def process(self, payload):
        self.logger.info(f"greeting {payload['name']}")
        return {"greeting": f"hello {payload['name']}"}


handler = Greeter().handler
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project with a new worker, as the README's steps 1 and 2 add it."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("app.py", "cdk.json", "pyproject.toml"):
        shutil.copy2(ROOT / name, project / name)
    for name in ("infra", "lambdas", "shared"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (project / "lambdas" / "greeter").mkdir()
    (project / "lambdas" / "greeter" / "app.py").write_text(GREETER)
    cdk = json.loads((project / "cdk.json").read_text())
    sosw = cdk["context"]["sosw"]
    sosw["workers"]["greeter"] = {
        "code": "lambdas/greeter",
        "timeout": 10,
        "max_simultaneous_invocations": 2,
        "duration": 10,
        "cooldown": 30,
    }
    sosw["workers"]["legacy"] = {"arn": "arn:aws:lambda:us-east-1:123456789012:function:legacy", "cooldown": 30}
    sosw["workers"]["archive"] = {"arn": "arn:aws:lambda:us-east-1:123456789012:function:archive"}
    sosw["tables"]["adopt"] = ["closed"]  # an existing sosw_closed_tasks: created locally from sosw's definition
    (project / "cdk.json").write_text(json.dumps(cdk, indent=2))
    return project


def sosw(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "sosw.cli", *args], cwd=project, capture_output=True, text=True, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(p) for p in (task / "children").read_text().split())
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def archived(project: Path, labourer: str) -> int:
    doc = json.loads(sosw(project, "--local", "status", "--output", "json").stdout)
    jsonschema.validate(doc, json.loads((SCHEMAS / "status.schema.json").read_text()))
    return next(row["archived"] for row in doc["labourers"] if row["labourer"] == labourer)


def test_add_a_worker_run_it_locally_see_its_logs_edit_it(project: Path):
    # Given `sosw local` running the project's own stack in the background
    local = subprocess.Popen(
        [sys.executable, "-m", "sosw.cli", "local", "--speed", "60", "-c", "stage=e2e", "--stub", "legacy=completes"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        banner = []
        for text in local.stdout:
            banner.append(text.rstrip())
            if "Ctrl-C stops" in text:
                break
        out = "\n".join(banner)
        assert local.poll() is None, out
        # Then it runs the new worker from its folder, stubs one imported worker and lists the other
        assert "  greeter: runs lambdas/greeter (edits apply at the next invocation)" in banner, out
        assert (
            "  legacy: imported (arn:aws:lambda:us-east-1:123456789012:function:legacy), "
            "stood in for by a stub that completes" in banner
        ), out
        assert (
            "  archive: imported (arn:aws:lambda:us-east-1:123456789012:function:archive): can't run locally; "
            "--stub archive=completes|fails|sleeps:S stands one in" in banner
        ), out
        # and serves the console beside it, on loopback, at the URL it printed (its token signs the browser in)
        console = next(line.removeprefix("console: ") for line in banner if line.startswith("console: "))
        assert console.startswith("http://127.0.0.1:") and "/?token=" in console, out
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(console, timeout=30) as page:
            assert "token" not in page.url and 'data-labourer="greeter"' in page.read().decode()
        state = json.loads((project / ".cache" / "sosw-local.json").read_text())
        assert state["config"]["dynamo_db_config"]["table_name"] == "e2e_sosw_tasks"  # -c stage=e2e
        processes = children(local.pid)
        assert processes

        # When a task is created for the new worker (and one for the stubbed imported worker)
        first = sosw(project, "--local", "create", "greeter", "--payload", '{"name": "Ada"}').stdout.strip()
        sosw(project, "--local", "create", "legacy", "--payload", "{}")
        # Then status --output json shows them completed (in the adopted closed table)
        wait_for(lambda: archived(project, "greeter") == 1, 60, "the greeter task to complete")
        wait_for(lambda: archived(project, "legacy") == 1, 30, "the stubbed task to complete")
        # and show --logs prints its attempt with the worker's own log line
        shown = sosw(project, "--local", "show", first, "--logs").stdout
        assert f"task {first} (greeter): completed, after 1 attempt" in shown
        assert "attempt 1: completed" in shown and "INFO    greeting Ada" in shown, shown
        doc = json.loads(sosw(project, "--local", "show", first, "--logs", "--output", "json").stdout)
        jsonschema.validate(doc, json.loads((SCHEMAS / "show.schema.json").read_text()))
        assert [line["message"] for line in doc["attempts"][0]["lines"]] == ["greeting Ada", "Task completed"]

        # When the worker's code is edited, with the stack still running
        source = project / "lambdas" / "greeter" / "app.py"
        source.write_text(GREETER.replace('f"greeting {', 'f"welcome, {'))
        second = sosw(project, "--local", "create", "greeter", "--payload", '{"name": "Bob"}').stdout.strip()
        # Then the next task runs the new code
        wait_for(lambda: archived(project, "greeter") == 2, 60, "the second greeter task to complete")
        assert "INFO    welcome, Bob" in sosw(project, "--local", "show", second, "--logs").stdout
    finally:
        # When it gets SIGTERM (as `timeout` or a process manager sends it)
        local.send_signal(signal.SIGTERM)
        rest = local.communicate(timeout=60)[0]
    # Then it stops cleanly: exit code 128 + 15, its processes gone, and its state file too
    assert local.returncode == 143, rest
    assert "local stack stopped (SIGTERM)" in rest
    assert not (project / ".cache" / "sosw-local.json").exists()
    wait_for(lambda: not [p for p in processes if alive(p)], 15, f"the local stack's processes {processes} to end")
    # and a --local command says in one line that nothing runs
    after = sosw(project, "--local", "status", check=False)
    assert after.returncode == 1 and after.stderr.count("\n") == 1 and "no local stack" in after.stderr
    assert os.path.isdir(project / "lambdas" / "greeter")
