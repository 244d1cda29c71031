"""The documentation site: built strictly, and its references checked against the code they describe.

The strict build fails on any warning (a broken link, a missing page, an anchor that moved, a reference to
this project's code that no longer resolves). The generated references are then held to the code: every
TaskManager config key the package reads, every CLI command and option, every key the stack's config
reader takes, and every labourer setting.
"""

from __future__ import annotations

import argparse
import ast
import html
import importlib
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra import config as stack_config
from sosw import cli
from sosw import config as tm_config
from sosw.labourer import SETTINGS as LABOURER_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PACKAGE = ROOT / "shared" / "sosw"

#: How the package names the TaskManager config where it reads it.
CONFIG_RECEIVERS = {
    "config",
    "self.config",
    "ctx.config",
    "self.ctx.config",
    "self.tm.config",
    "tm.config",
    "task_manager.config",
    "stack.config",
    "spec.config",
}
#: Keys read from a receiver named ``config`` that is not the TaskManager's: console/logs.py reads a Lambda
#: function's configuration (GetFunctionConfiguration) under that name.
NOT_TASK_MANAGER_KEYS = {"LoggingConfig", "FunctionName", "LogGroup"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs")
    html_dir = out / "html"
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-n", "-q", "-b", "html"]
    built = subprocess.run(
        [*command, "-d", str(out / "doctrees"), str(DOCS), str(html_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0 and not built.stderr.strip(), built.stderr
    return html_dir


def test_the_site_builds_strictly_with_every_page(site: Path):
    # Then every Markdown page of docs/ became a page of the site (none left out of the navigation)
    pages = {p.relative_to(DOCS).with_suffix("") for p in DOCS.rglob("*.md") if "_build" not in p.parts}
    built = {p.relative_to(site).with_suffix("") for p in site.rglob("*.html")}
    assert pages <= built, pages - built
    # and the benchmark chart is on the benchmarks page
    assert (site / "_images" / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert "_images/results.png" in (site / "benchmarks.html").read_text()


# ---------------------------------------------------------------------------- TaskManager config keys


def _flat_keys() -> set[str]:
    keys = {k for k in tm_config.DEFAULT_CONFIG if k != "dynamo_db_config"}
    keys |= {f"dynamo_db_config.{k}" for k in tm_config.DEFAULT_CONFIG["dynamo_db_config"]}
    return keys | set(tm_config.ROLE_DEFAULTS)


def _reads_of_the_config() -> Iterator[tuple[str, int, str, ast.expr | None]]:
    """(module, line, dotted key, the default given there) for every read of a key of the TaskManager config."""
    for path in sorted(PACKAGE.rglob("*.py")):
        module = "sosw." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
                receiver, args = node.func.value, node.args
                if not args or not isinstance(args[0], ast.Constant) or not isinstance(args[0].value, str):
                    continue
                key, default = args[0].value, (args[1] if len(args) > 1 else None)
            elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
                receiver, key, default = node.value, node.slice.value, None
                if not isinstance(key, str):
                    continue
            else:
                continue
            text = ast.unparse(receiver)
            if text in CONFIG_RECEIVERS and key not in NOT_TASK_MANAGER_KEYS:
                yield module, node.lineno, key, default
            elif text.endswith("['dynamo_db_config']") and text[: -len("['dynamo_db_config']")] in CONFIG_RECEIVERS:
                yield module, node.lineno, f"dynamo_db_config.{key}", default


def _default_value(module: str, default: ast.expr) -> Any:
    if isinstance(default, ast.Name):  # a module constant, e.g. DEFAULT_COEFFICIENTS
        return getattr(importlib.import_module(module), default.id)
    return ast.literal_eval(default)


def test_every_config_key_the_code_reads_is_defined_in_one_place_with_its_meaning():
    reads = list(_reads_of_the_config())
    assert len(reads) > 50  # the scan finds the reads (it would pass vacuously if it found none)
    read_keys = {key for _, _, key, _ in reads if key != "dynamo_db_config"}
    # Then every key read is documented, and every documented key has its default in the one place
    assert read_keys - set(tm_config.MEANINGS) == set()
    assert _flat_keys() ^ (set(tm_config.MEANINGS) - {"max_attempts_<labourer>"}) == set()
    # and a default given where a key is read is the documented one
    for module, line, key, default in reads:
        if default is None or key == "dynamo_db_config" or key not in tm_config.MEANINGS or "." in key:
            continue  # nested keys are read from the merged config, where they are always present
        documented = tm_config.ROLE_DEFAULTS.get(key, tm_config.DEFAULT_CONFIG.get(key))
        assert _default_value(module, default) == documented, f"{module}:{line}: {key}"


def test_the_configuration_reference_lists_every_key_with_its_default(site: Path):
    page = html.unescape((site / "reference" / "configuration.html").read_text())
    for key in tm_config.MEANINGS:
        assert f">{key}<" in page, key
    row = re.search(r">dispatch_wait_seconds<.*?</tr>", page, re.S)
    assert row and ">20<" in row.group(0) and "this project" in row.group(0)


def test_the_labourer_settings_are_all_named_on_the_configuration_page():
    text = (DOCS / "reference" / "configuration.md").read_text()
    section = text[text.index("## Labourer settings") :].split("\n## ", 1)[0]
    for setting in LABOURER_SETTINGS:
        assert f"`{setting}`" in section, setting


# ---------------------------------------------------------------------------- the CLI


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


def test_the_cli_reference_lists_every_command_and_option(site: Path):
    page = html.unescape((site / "reference" / "cli.html").read_text())
    commands = list(_commands(cli._parser()))
    assert len(commands) > 10
    ids = {"-".join(("sosw", *path)) for path, _ in commands}
    starts = sorted((m.start(), m.group(1)) for m in re.finditer(r'id="(sosw(?:-[a-z]+)*)"', page) if m.group(1) in ids)
    assert {name for _, name in starts} == ids
    sections = {
        name: page[start : (starts[i + 1][0] if i + 1 < len(starts) else len(page))]
        for i, (start, name) in enumerate(starts)
    }
    for path, parser in commands:
        shown = {
            option
            for kbd in re.findall(r"<kbd>([^<]*)</kbd>", sections["-".join(("sosw", *path))])
            for option in kbd.split(", ")
        }
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            names = action.option_strings or [action.dest]
            assert set(names) <= shown, (path, names)


# ---------------------------------------------------------------------------- the cdk.json context


def _context_keys_read(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Every key the stack's config reader takes, with worker and function names generalised."""
    seen: set[str] = set()
    raw = stack_config._Reader.raw

    def recording(self: Any, key: str, default: Any = None) -> Any:
        seen.add(f"{self.path}.{key}")
        return raw(self, key, default)

    monkeypatch.setattr(stack_config._Reader, "raw", recording)
    context = dict(stack_config.load_cdk_json_context()["sosw"])
    context["workers"] = {
        "made": {"code": "lambdas/worker", "function_name": "made", "memory_size": 256, "timeout": 60},
        "imported": {"arn": "arn:aws:lambda:eu-west-1:123456789012:function:legacy", "permissions_confirmed": True},
    }
    stack_config.StackConfig.from_dict(context)
    generalised = set()
    for key in seen:
        parts = key.split(".")[1:]  # without the leading "sosw"
        if parts[0] in ("workers", "functions") and len(parts) > 1:
            parts[1] = "<name>"
        generalised.add(".".join(parts))
    return generalised


def _context_keys_named(text: str) -> set[str]:
    """Keys in the first cell of each table row: `a.b`, `c` means a.b and a.c."""
    named = set()
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        tokens = re.findall(r"`([^`]+)`", line.split(" | ")[0])
        prefix = tokens[0].rsplit(".", 1)[0] + "." if "." in tokens[0] else ""
        named |= {token if "." in token else prefix + token for token in tokens}
    return named


def test_the_cdk_context_page_names_every_key_the_stack_reads(monkeypatch: pytest.MonkeyPatch):
    text = (DOCS / "reference" / "cdk-context.md").read_text()
    read = _context_keys_read(monkeypatch)
    assert {"stage", "tables.adopt", "workers.<name>.permissions_confirmed", "functions.<name>.timeout"} <= read
    named = _context_keys_named(text)
    # (a key holding others, such as `tables`, is named by its own keys)
    assert {key for key in read if key not in named and not any(n.startswith(f"{key}.") for n in named)} == set()
    # and the control functions' defaults are the code's
    for role, defaults in stack_config.CONTROL_FUNCTIONS.items():
        assert f"| `{role}` | {defaults['memory_size']} | {defaults['timeout']} |" in text, role


# ---------------------------------------------------------------------------- the README, the front door


def test_the_readme_is_short_and_its_links_into_the_site_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    links = re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", text)
    assert len(links) > 20
    for link in links:
        assert (ROOT / link).is_file(), link
    # Every page of the site is linked from the README, but for the index (the site's own front page)
    pages = {str(p.relative_to(ROOT)) for p in DOCS.rglob("*.md") if "_build" not in p.parts}
    assert pages - set(links) <= {"docs/index.md"} | {p for p in pages if p.startswith("docs/howto/")}
