"""The layer: built locally without Docker, for Lambda's platform, cached by what it is built from.

The first test downloads Powertools' wheels from PyPI once per fresh checkout (then the project's
.cache/layer holds it); the others stay offline.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from infra import layer as layer_module
from infra.config import PROJECT_ROOT
from infra.layer import build_layer, layer_requirements

PACKAGE = PROJECT_ROOT / "shared" / "sosw"


@pytest.fixture(scope="module")
def real_build():
    """The layer app.py deploys (arm64, Python 3.14), from the project's cache."""
    return build_layer(
        package_dir=PACKAGE, cache_dir=PROJECT_ROOT / ".cache" / "layer", architecture="arm64", python_version="3.14"
    )


def test_the_layer_holds_sosw_and_powertools_for_lambda_but_no_boto_or_caches(real_build):
    python = real_build.path / "python"
    assert (python / "sosw" / "managers" / "task.py").is_file()
    assert (python / "aws_lambda_powertools" / "utilities" / "parameters").is_dir()
    assert not [p for p in python.iterdir() if p.name.lower().startswith(("boto3", "botocore", "s3transfer"))]
    assert not list(python.rglob("__pycache__")) and not list(python.rglob("*.pyc"))
    assert not (python / "bin").exists()
    # Well under Lambda's 250 MB unzipped (sosw + Powertools are a few MB)
    assert 1_000_000 < real_build.size_bytes < 20_000_000


def test_the_layer_ships_only_what_lambda_runs(real_build):
    # Given the layer app.py deploys: the local stack, the demo, the CLI and its output layer are not in it
    package = real_build.path / "python" / "sosw"
    assert not (package / "local").exists() and not (package / "cli.py").exists()
    assert not (package / "console").exists()
    # Then every module the handlers import is there, and nothing else of the package is left out
    shipped = {p.relative_to(package).as_posix() for p in package.rglob("*.py")}
    sources = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    assert sources - shipped == {s for s in sources if s.startswith(("local/", "console/")) or s == "cli.py"}
    assert {"managers/task.py", "tasks/queue.py", "orchestrator.py", "worker_assistant.py"} <= shipped


def test_the_console_and_its_dependencies_stay_out_of_the_layer(real_build):
    # Given the console's extra (Starlette, Jinja2, uvicorn, python-multipart) and its static files
    python = real_build.path / "python"
    names = {p.name.lower() for p in python.iterdir()}
    # Then none of them is in the layer, nor asked of pip for it
    assert not [n for n in names if n.startswith(("starlette", "jinja2", "uvicorn", "multipart", "python_multipart"))]
    assert not list(python.rglob("htmx*")) and not list(python.rglob("*.html"))
    assert not [r for r in layer_requirements() if r.lower().startswith(("starlette", "jinja2", "uvicorn"))]


def test_editing_the_cli_or_the_local_stack_does_not_rebuild_the_layer(tmp_path):
    package = tmp_path / "sosw"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    first = _sources_only(package, tmp_path / "cache", architecture="arm64", python_version="3.14")
    (package / "cli.py").write_text((package / "cli.py").read_text() + "\n# changed\n")
    (package / "local" / "demo.py").write_text((package / "local" / "demo.py").read_text() + "\n# changed\n")
    again = _sources_only(package, tmp_path / "cache", architecture="arm64", python_version="3.14")
    assert again.cached and again.path == first.path


def test_powertools_is_pinned_to_the_tested_version_and_boto3_is_left_to_the_runtime():
    requirements = layer_requirements()
    assert any(r.startswith("aws-lambda-powertools==") for r in requirements)
    assert not any(r.lower().startswith(("boto3", "botocore")) for r in requirements)


def test_a_second_build_reuses_the_cache_without_pip(real_build, monkeypatch):
    monkeypatch.setattr(layer_module, "_pip_install", lambda *a, **k: pytest.fail("pip ran on a cached build"))
    again = build_layer(
        package_dir=PACKAGE, cache_dir=PROJECT_ROOT / ".cache" / "layer", architecture="arm64", python_version="3.14"
    )
    assert again.cached and again.path == real_build.path


def _sources_only(package: Path, cache: Path, **kwargs):
    return build_layer(package_dir=package, cache_dir=cache, with_dependencies=False, **kwargs)


def test_changing_a_source_file_means_a_new_build(tmp_path):
    # Given a copy of the package, built once
    package = tmp_path / "sosw"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    first = _sources_only(package, tmp_path / "cache", architecture="arm64", python_version="3.14")
    # When a cache file appears nothing changes, but when a source changes the build is redone
    (package / "__pycache__").mkdir(exist_ok=True)
    (package / "__pycache__" / "x.pyc").write_bytes(b"junk")
    assert _sources_only(package, tmp_path / "cache", architecture="arm64", python_version="3.14").cached
    (package / "clock.py").write_text((package / "clock.py").read_text() + "\n# changed\n")
    second = _sources_only(package, tmp_path / "cache", architecture="arm64", python_version="3.14")
    assert not second.cached and second.path != first.path
    assert "# changed" in (second.path / "python" / "sosw" / "clock.py").read_text()


def test_the_architecture_and_python_version_choose_the_wheels(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(layer_module, "_pip_install", lambda target, reqs, arch, version: calls.append((arch, version)))
    builds = [
        build_layer(
            package_dir=PACKAGE, cache_dir=tmp_path, architecture=arch, python_version=version, requirements=["x==1"]
        )
        for arch, version in (("x86_64", "3.12"), ("arm64", "3.13"))
    ]
    assert calls == [("x86_64", "3.12"), ("arm64", "3.13")]
    assert builds[0].path != builds[1].path
    assert layer_module._PLATFORMS["x86_64"][-1] == "manylinux2014_x86_64"
    assert layer_module._PLATFORMS["arm64"][-1] == "manylinux2014_aarch64"
