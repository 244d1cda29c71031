"""docs/howto/add-a-worker.md, followed in a copy of the project up to the deploy (which stays out).

The page's steps 1 to 3 as the page gives them: its worker's code (with a ``resize`` of the test's own, which
the page leaves to the reader) and its cdk.json entry, then the commands of step 3. Beside it, a worker of
the test's own whose log lines and edit are checked; ``sosw local`` in the background (with a ``-c`` override,
an adopted table, and imported workers, one stubbed); ``sosw --local create``; ``status --output json``
until it is done; ``show ID --logs`` with the worker's own line; an edit of the worker picked up by the
next task; then SIGTERM, which stops the stack and its processes and removes the state file.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from textwrap import dedent

import jsonschema
import pytest

from sosw import cli

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "howto" / "add-a-worker.md"
#: The page's worker calls ``resize``, the reader's own code: the test's stands in for it.
RESIZE = 'def resize(key):\n    return f"small/{key}"\n\n\n'
SCHEMAS = Path(cli.__file__).parent / "console" / "schemas"
GREETER = """from sosw.worker import Worker


class Greeter(Worker):
    def process(self, payload):
        self.logger.info(f"greeting {payload['name']}")
        return {"greeting": f"hello {payload['name']}"}


handler = Greeter().handler
"""


def page_steps() -> tuple[str, dict, list[str]]:
    """The page's numbered steps: the worker's code (1), its cdk.json entry (2), the commands of step 3."""
    steps = re.split(r"^\d\. ", PAGE.read_text(), flags=re.M)[1:]
    code = dedent(re.search(r"```python\n(.*?)```", steps[0], re.S).group(1))
    entry = json.loads("{" + dedent(re.search(r"```json\n(.*?)```", steps[1], re.S).group(1)) + "}")
    commands = re.findall(r"`(sosw [^`]+)`", steps[2])
    return code, entry, commands


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project with the page's worker (steps 1 and 2) and one of the test's own."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("app.py", "cdk.json", "pyproject.toml"):
        shutil.copy2(ROOT / name, project / name)
    for name in ("infra", "lambdas", "shared"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    code, entry, _ = page_steps()
    ((name, settings),) = entry.items()
    (project / settings["code"]).mkdir(parents=True)
    (project / settings["code"] / "app.py").write_text(RESIZE + code)
    (project / "lambdas" / "greeter").mkdir()
    (project / "lambdas" / "greeter" / "app.py").write_text(GREETER)
    cdk = json.loads((project / "cdk.json").read_text())
    sosw = cdk["context"]["sosw"]
    sosw["workers"][name] = settings
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
        try:
            found.update(int(p) for p in (task / "children").read_text().split())
        except FileNotFoundError:  # a thread that ended between the listing and the read has no children
            continue
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
    # Given `sosw local` running the project's own stack in the background, as step 3 starts it
    _, _, (start, create, status, show) = page_steps()
    assert shlex.split(start) == ["sosw", "local", "--speed", "60"]
    local = subprocess.Popen(
        [sys.executable, "-m", "sosw.cli", *shlex.split(start)[1:], "-c", "stage=e2e", "--stub", "legacy=completes"],
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
        assert "  resize_images: runs lambdas/resize_images (edits apply at the next invocation)" in banner, out
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

        # When step 3's commands are run: create, status, show --logs
        resized = sosw(project, *shlex.split(create)[1:]).stdout.strip()
        wait_for(lambda: archived(project, "resize_images") == 1, 60, "the page's task to complete")
        header, *rows = sosw(project, *shlex.split(status)[1:]).stdout.splitlines()
        (row,) = [row.split() for row in rows if row.split()[0] == "resize_images"]
        assert row[header.split().index("arch")] == "1", rows
        shown = sosw(project, *shlex.split(show.replace("TASK_ID", resized))[1:]).stdout
        # Then the page's worker completed the task at its first attempt
        assert f"task {resized} (resize_images): completed, after 1 attempt" in shown, shown

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
