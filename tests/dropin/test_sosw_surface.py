"""sosw 0.7.51's public surface, as its users use it: every public method and attribute of sosw's classes, built
as sosw's own unit tests build them, is offered here with a call sosw's parameters fit, or declared missing, with
why, in ``docs/sosw-differences.md``.

sosw's side runs in its own virtualenv (``sosw_side.py``, ``"surface": true``); both sides are described by
``surface_probe.describe``.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from sosw.app import LambdaGlobals, Processor
from sosw.labourer import Labourer
from sosw.local.tables import prefixed_config
from sosw.managers.ecology import EcologyManager
from sosw.managers.task import TaskManager
from sosw.orchestrator import Orchestrator
from sosw.scavenger import Scavenger
from sosw.scheduler import Scheduler
from sosw.worker import Worker
from sosw.worker_assistant import WorkerAssistant
from tests.dropin import differences
from tests.dropin.differential import sosw_surface
from tests.dropin.surface_probe import describe

ARN = "arn:aws:lambda:us-west-2:000000000000:function:some_function"
CONFIG = prefixed_config("surface_", {"labourers": {"some_function": {"arn": ARN, "max_simultaneous_invocations": 10}}})
ROOT = Path(__file__).resolve().parents[2]


def ours() -> dict[str, Any]:
    """This package's classes, built with the same configs as sosw's side."""
    task_config = {**CONFIG, "init_clients": []}
    essential = {"init_clients": [], "task_config": task_config}
    return {
        "TaskManager": TaskManager(custom_config=task_config),
        "EcologyManager": EcologyManager(custom_config={"test": True}),
        "Labourer": Labourer(id="some_function", arn=ARN),
        "Orchestrator": Orchestrator(custom_config=dict(essential)),
        "Scavenger": Scavenger(custom_config=dict(essential)),
        "WorkerAssistant": WorkerAssistant(
            custom_config={"init_clients": [], "dynamo_db_config": task_config["dynamo_db_config"]}
        ),
        "Scheduler": Scheduler(custom_config={**essential, "job_schema": {"chunkable_attrs": [["section", {}]]}}),
        "Worker": Worker(),
        "Processor": Processor(custom_config={}),
        "LambdaGlobals": LambdaGlobals(),
    }


@pytest.fixture(scope="module")
def theirs() -> dict[str, Any]:
    return sosw_surface(CONFIG)


def _call_fits(sosw_params: list[list[str]] | None, method: Any) -> str | None:
    """Why a call made with sosw's parameters would not bind to ours (None: it binds)."""
    if sosw_params is None or any(kind.startswith("VAR_") for _name, kind in sosw_params):
        return None  # sosw's takes anything (a decorated method): nothing to hold ours to
    signature = inspect.signature(method)
    positional = [n for n, kind in sosw_params if kind in ("POSITIONAL_ONLY", "POSITIONAL_OR_KEYWORD")]
    try:
        signature.bind(*positional)
    except TypeError as exc:
        return f"sosw's {len(positional)} positional argument(s) {positional}: {exc}"
    by_name = [n for n, kind in sosw_params if kind in ("POSITIONAL_OR_KEYWORD", "KEYWORD_ONLY")]
    try:
        signature.bind_partial(**dict.fromkeys(by_name))
    except TypeError as exc:
        return f"sosw's keyword argument(s) {by_name}: {exc}"
    return None


def test_every_public_name_of_sosws_classes_is_here_or_declared_missing_with_why(theirs):
    # Given sosw's classes and ours, each built as sosw's unit tests build them
    mine = ours()
    declared = differences.missing_names()
    problems, missing = [], set()
    for cls, entry in theirs["classes"].items():
        ours_obj = mine[cls]
        assert type(ours_obj).__module__ == entry["module"], f"{cls} lives in {entry['module']} in sosw"
        our_names = describe(ours_obj)
        for name, what in entry["names"].items():
            qualified = f"{cls}.{name}"
            # When a name of sosw's is looked for in ours
            if name not in our_names:
                missing.add(qualified)
                if qualified not in declared:
                    problems.append(f"{qualified} ({what['kind']}): missing and not declared")
                continue
            if qualified in declared:
                problems.append(f"{qualified}: declared missing in {differences.DOC.name}, but it is here")
            if what["kind"] == "method":
                if not callable(getattr(ours_obj, name)):
                    problems.append(f"{qualified}: a method in sosw, not callable here")
                elif (why := _call_fits(what["params"], getattr(ours_obj, name))) is not None:
                    problems.append(f"{qualified}: {why}")
    # Then every one is here, with sosw's call fitting, or declared with why; and no declaration is stale
    problems += [f"{name}: declared missing, but sosw has no such name" for name in sorted(set(declared) - missing)]
    assert not problems, "\n".join(problems)


def test_every_module_offers_sosws_public_names(theirs):
    for module, names in theirs["modules"].items():
        mine = importlib.import_module(module)
        assert [n for n in names if not hasattr(mine, n)] == [], module


def test_every_declared_behaviour_difference_is_asserted_by_a_test():
    # Given the behaviour differences the document declares
    keys = differences.behaviour()
    assert keys
    # Then each is read by a test, through `declared`, which asserts it
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py"))
    used = set(re.findall(r"""declared\(\s*["']([^"']+)["']""", sources))
    assert sorted(set(keys) - used) == [], "declared, but no test asserts it"
    assert sorted(used - set(keys)) == [], "asserted, but not declared"
