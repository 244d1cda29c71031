"""The upgrade of the slot counters: the previous release's code and this one run together on one table.

While a deployment rolls, the previous release's Lambdas (a following run lasts up to 300 s; Lambda
redelivers reports for minutes) claim and close beside the new ones. The previous release is run for real:
its ``shared/`` package, taken from git history into a temporary folder and imported by a child
interpreter, against the same DynamoDB Local tables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sosw.clock import SystemClock
from sosw.managers.ecology import EcologyManager
from sosw.managers.task import TaskManager
from tests.conftest import scan_all
from tests.taskmanager.test_dispatch import occupying, running

ROOT = Path(__file__).resolve().parents[2]
#: The last release with one counter item per labourer (``ADD running -1`` on every close).
PREVIOUS_RELEASE = "81978e5"

#: The child: the previous release's TaskManager, one action, the tasks it touched as JSON on stdout.
CHILD = r"""
import json, sys
from sosw.clock import SystemClock
from sosw.managers.ecology import EcologyManager
from sosw.managers.task import TaskManager
config, action, count = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
tm = TaskManager(config, clock=SystemClock(), ecology_client=EcologyManager(config))
alpha = tm.get_labourer("alpha")
if action == "claim":
    tm.open_run_window()
    print(json.dumps(tm.claim_tasks(alpha, tm.get_next_for_labourer(alpha, count), count)))
elif action == "close":
    for task in json.loads(sys.stdin.read()):
        tm.complete_and_archive_task(task, attempt=task["attempts"])
    print("[]")
else:
    print(json.dumps(tm.get_running_counts([alpha])))
"""


@pytest.fixture(scope="module")
def previous_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The previous release's ``shared/`` package, from git history."""
    folder = tmp_path_factory.mktemp("previous")
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", PREVIOUS_RELEASE, "shared"], capture_output=True, check=False
    )
    if archive.returncode != 0:
        pytest.fail(f"git archive {PREVIOUS_RELEASE} failed (a shallow clone?): {archive.stderr.decode()}")
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "shared"


def previous(shared: Path, config: dict[str, Any], action: str, count: int = 0, tasks: Any = None) -> Any:
    env = {**os.environ, "PYTHONPATH": str(shared)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(config), action, str(count)],
        input=json.dumps(tasks or []),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def close(manager: TaskManager, tasks: list[dict[str, Any]]) -> None:
    for task in tasks:
        assert manager.complete_and_archive_task(task, attempt=task["attempts"])


@pytest.mark.integration
@pytest.mark.parametrize("backend", [pytest.param("local", marks=pytest.mark.integration)], indirect=True)
def test_claims_and_closes_of_both_releases_keep_the_counts_exact_and_the_cap(config, previous_release):
    # Given a labourer of cap 6 with 20 queued tasks
    cfg = {**config, "labourers": {**config["labourers"]}}
    cfg["labourers"]["alpha"] = {**cfg["labourers"]["alpha"], "max_simultaneous_invocations": 6}
    manager = TaskManager(cfg, clock=SystemClock(), ecology_client=EcologyManager(cfg))
    alpha = manager.get_labourer("alpha")
    manager.create_tasks(alpha, [{"n": i} for i in range(20)])
    time.sleep(1.01)
    # When the previous release claims 4 (its counter: running = 4)
    old_claims = previous(previous_release, cfg, "claim", 4)
    assert len(old_claims) == 4
    # Then this release counts them, and its own claim stops at the cap: 2 more
    assert running(manager, "alpha") == 4
    manager.open_run_window()
    new_claims = manager.claim_tasks(alpha, manager.get_next_for_labourer(alpha, 6), 6)
    assert len(new_claims) == 2 and occupying(cfg)["alpha"] == 6 == running(manager, "alpha")
    # When this release closes 2 of the previous release's claims (freed shards) and the previous release
    # closes 1 of this release's (ADD running -1 on the one counter)
    close(manager, old_claims[:2])
    previous(previous_release, cfg, "close", tasks=new_claims[:1])
    # Then both releases see 3 running: the new one exactly, the old one never less than that
    assert running(manager, "alpha") == 3 == occupying(cfg)["alpha"]
    old_view = previous(previous_release, cfg, "running")["alpha"]
    assert old_view >= 3
    # When both claim again, the previous release first (its view is stricter), then this one
    time.sleep(1.01)
    old_more = previous(previous_release, cfg, "claim", 6)
    manager.open_run_window()
    new_more = manager.claim_tasks(alpha, manager.get_next_for_labourer(alpha, 6), 6)
    # Then the cap holds across both, and the counts equal the tasks holding a slot
    holding = occupying(cfg)["alpha"]
    assert holding <= 6 and holding == running(manager, "alpha") == 3 + len(old_more) + len(new_more)
    # When every claimed task is closed, each by the other release than the one that claimed it
    close(manager, old_claims[2:] + old_more)
    previous(previous_release, cfg, "close", tasks=new_claims[1:] + new_more)
    # Then nothing holds a slot and the count is 0, every close done once
    assert running(manager, "alpha") == 0 == occupying(cfg)["alpha"]
    closed = Counter(t["task_id"] for t in scan_all(cfg)["closed"])
    assert len(closed) == 4 + 2 + len(old_more) + len(new_more) and set(closed.values()) == {1}
