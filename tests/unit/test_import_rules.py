"""The layer's dependency order, held by a test so it can't rot (docs/contributing.md, "Layout").

base modules < sosw.tasks steps (model < context < queue < creation, claims, reports, moves < dead)
< sosw.jobs (chunking, model < store, events < submit, tracking < api) < managers.task (the facade)
< the roles (orchestrator, scavenger, worker_assistant, ...) < cli, console, local.
The EcologyManager sits on the base alone. Lambda's handlers never reach the CLI, the local stack or CDK.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "shared" / "sosw"

BASE = {
    "sosw",
    "sosw.aws",
    "sosw.capacity",
    "sosw.clock",
    "sosw.config",
    "sosw.dynamo",
    "sosw.errors",
    "sosw.labourer",
    "sosw.leases",
    "sosw.metrics",
    "sosw.retry",
    "sosw.schema",
    "sosw.validation",
}
#: What each step module may import from the package besides the base modules.
STEPS = {
    "sosw.tasks.model": set(),
    "sosw.tasks.context": set(),
    "sosw.tasks.compat": set(),
    "sosw.tasks.queue": {"sosw.tasks.context", "sosw.tasks.model"},
    "sosw.tasks.slots": {"sosw.tasks.context"},
    "sosw.tasks.creation": {"sosw.tasks.context", "sosw.tasks.model", "sosw.tasks.queue"},
    "sosw.tasks.claims": {"sosw.tasks.context", "sosw.tasks.model", "sosw.tasks.queue", "sosw.tasks.slots"},
    "sosw.tasks.reports": {
        "sosw.tasks.compat",
        "sosw.tasks.context",
        "sosw.tasks.model",
        "sosw.tasks.queue",
        "sosw.tasks.slots",
    },
    "sosw.tasks.notices": {"sosw.tasks.context"},
    "sosw.tasks.durations": {"sosw.tasks.context"},
    "sosw.tasks.moves": {
        "sosw.tasks.compat",
        "sosw.tasks.context",
        "sosw.tasks.model",
        "sosw.tasks.notices",
        "sosw.tasks.queue",
        "sosw.tasks.slots",
    },
    "sosw.tasks.dead": {
        "sosw.tasks.compat",
        "sosw.tasks.context",
        "sosw.tasks.model",
        "sosw.tasks.notices",
        "sosw.tasks.queue",
        "sosw.tasks.moves",
    },
}
#: The jobs capability (sosw.jobs) sits above the steps and below the facade; chunking needs the base alone.
_TASKS = {"sosw.tasks.context", "sosw.tasks.model", "sosw.tasks.queue", "sosw.tasks.creation", "sosw.tasks.moves"}
JOBS = {
    "sosw.jobs": set(),
    "sosw.jobs.job_event": set(),
    "sosw.jobs.chunking": {"sosw.jobs.job_event"},
    "sosw.jobs.model": set(),
    "sosw.jobs.events": {"sosw.jobs.model"},
    "sosw.jobs.store": {"sosw.jobs.model", "sosw.tasks.context", "sosw.tasks.model"},
    "sosw.jobs.submit": {"sosw.jobs.chunking", "sosw.jobs.model", "sosw.jobs.store", *_TASKS},
    "sosw.jobs.tracking": {"sosw.jobs.events", "sosw.jobs.model", "sosw.jobs.store", *_TASKS},
    "sosw.jobs.api": {
        "sosw.jobs.model",
        "sosw.jobs.store",
        "sosw.jobs.submit",
        "sosw.jobs.tracking",
        *_TASKS,
    },
}
TOOLS = ("sosw.cli", "sosw.console", "sosw.local")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sosw_imports(path: Path) -> set[str]:
    """Every ``sosw`` module the file imports, wherever the import stands (lazy ones included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "sosw")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sosw":
            found.add(node.module)
            # ``from sosw.tasks import creation`` imports the module sosw.tasks.creation
            found.update(
                f"{node.module}.{a.name}"
                for a in node.names
                if (PACKAGE.parent / node.module.replace(".", "/") / f"{a.name}.py").is_file()
            )
    return found


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}


def test_every_step_module_is_listed_and_imports_only_what_lies_below_it():
    steps = {name for name in MODULES if name.startswith("sosw.tasks.")}
    assert steps == set(STEPS), "a new module in sosw/tasks must take its place in STEPS"
    for name, allowed in STEPS.items():
        imported = sosw_imports(MODULES[name]) - {"sosw.tasks"}
        assert imported <= BASE | allowed, f"{name} imports {sorted(imported - BASE - allowed)}"


def test_every_jobs_module_is_listed_and_imports_only_what_lies_below_it():
    jobs = {name for name in MODULES if name == "sosw.jobs" or name.startswith("sosw.jobs.")}
    assert jobs == set(JOBS), "a new module in sosw/jobs must take its place in JOBS"
    for name, allowed in JOBS.items():
        imported = sosw_imports(MODULES[name]) - {"sosw.jobs", "sosw.tasks"}
        assert imported <= BASE | allowed, f"{name} imports {sorted(imported - BASE - allowed)}"
        assert "sosw.managers.task" not in imported, name


def test_no_step_module_imports_the_facade():
    for name in STEPS:
        assert "sosw.managers.task" not in sosw_imports(MODULES[name]), name


def test_the_ecology_manager_does_not_import_the_task_manager():
    imported = sosw_imports(MODULES["sosw.managers.ecology"])
    assert not {i for i in imported if i == "sosw.managers.task" or i.startswith("sosw.tasks")}
    assert imported <= BASE


def test_base_modules_import_only_base_modules():
    for name in BASE - {"sosw"}:
        assert sosw_imports(MODULES[name]) <= BASE, name


def test_nothing_in_the_layer_imports_the_cli_or_the_local_stack():
    for name, path in MODULES.items():
        if name.startswith(TOOLS):
            continue
        bad = {i for i in sosw_imports(path) if i.startswith(TOOLS)}
        assert not bad, f"{name} imports {sorted(bad)}"


HANDLERS = sorted((ROOT / "lambdas").glob("*/app.py"))


@pytest.mark.parametrize("handler", HANDLERS, ids=lambda p: p.parent.name)
def test_a_handler_loads_no_cli_no_local_stack_and_no_cdk(handler):
    # Given a fresh interpreter with only shared/ and the handler's folder on the path, as in Lambda
    probe = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('app', {str(handler)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print(json.dumps([callable(getattr(module, 'handler', None)), sorted(sys.modules)]))\n"
    )
    env = {"PYTHONPATH": str(PACKAGE.parent), "AWS_DEFAULT_REGION": "us-east-1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    has_handler, loaded = json.loads(out.stdout.splitlines()[-1])
    # Then it loaded, and pulled in none of them
    assert has_handler
    assert not [m for m in loaded if m.startswith(TOOLS)]
    assert not [m for m in loaded if m.split(".")[0] in ("aws_cdk", "constructs", "infra", "cdk_nag")]
