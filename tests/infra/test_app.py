"""`python app.py` (what `make synth` runs): synthesizes cdk.json's stack, cdk-nag included, offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.config import PROJECT_ROOT
from tests.infra.conftest import cdk_context


def _run_app(outdir: Path, context: dict | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CDK_OUTDIR": str(outdir)}
    env.pop("CDK_CONTEXT_JSON", None)
    if context is not None:
        env["CDK_CONTEXT_JSON"] = json.dumps(context)  # how the CDK CLI passes cdk.json and -c values
    return subprocess.run(
        [sys.executable, "app.py"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    outdir = tmp_path_factory.mktemp("cdk.out")
    return _run_app(outdir), outdir


def test_app_synthesizes_the_dev_stack_with_cdk_nag_and_prints_the_layer_size(synthesized):
    result, outdir = synthesized
    assert result.returncode == 0, result.stderr[-3000:]
    assert (outdir / "sosw-dev.template.json").is_file()
    assert "sosw layer (arm64, Python 3.14):" in result.stderr and "MB unzipped" in result.stderr
    assert "sources_only" not in result.stderr  # the deployable layer, with its dependencies
    report = json.loads((outdir / "validation-report.json").read_text())
    assert not any(r.get("violations") for r in report["pluginReports"])


def test_the_template_passes_cfn_lint(synthesized):
    cfnlint_api = pytest.importorskip("cfnlint.api")
    _, outdir = synthesized
    template = (outdir / "sosw-dev.template.json").read_text()
    matches = cfnlint_api.lint(template, config=cfnlint_api.ManualArgs(regions=["us-east-1", "eu-west-1"]))
    # W3005: the CDK itself makes a function depend on its role as well as referencing it
    assert [str(m) for m in matches if m.rule.id != "W3005"] == []


def test_a_bad_context_fails_synth_with_the_key_and_no_traceback(tmp_path):
    context = cdk_context(schedules={"orchestrator": "every minute"})
    result = _run_app(tmp_path, context)
    assert result.returncode == 1
    assert "synth failed: cdk.json context 'sosw.schedules.orchestrator'" in result.stderr
    assert "Traceback" not in result.stderr
