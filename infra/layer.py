"""The Lambda layer: the ``sosw`` package of ``shared/`` and its runtime dependencies, built without Docker.

pip downloads wheels for Lambda's platform (``--platform manylinux…_<arch> --only-binary=:all:``) into
``<cache>/<hash>/python``; the hash covers the package sources, the pinned requirements, the platform
and the Python version, so the build runs again only when one of them changes, and a cached build
needs no network. boto3/botocore are stripped: the Lambda runtime provides them, and the TaskManager
only uses long-stable DynamoDB and Lambda calls, so a second copy would add ~20 MB for nothing.

``layer_build: "sources_only"`` skips pip (the tests use it to stay offline); such a layer lacks
Powertools and is never deployable, so synth says so loudly.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import RemovalPolicy
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.config import PROJECT_ROOT, StackConfig

__all__ = ["LayerBuild", "SharedLayer", "build_layer", "layer_requirements"]

#: Bump when the build steps change, so old cached builds are not reused.
BUILD_FORMAT = "2"
#: Parts of the package that Lambda never runs (the local stack, the demo, the CLI and what it prints): kept out
#: of the layer.
NOT_SHIPPED = ("local", "cli.py", "console")
#: Provided by the Lambda runtime: never shipped.
RUNTIME_PROVIDED = ("boto3", "botocore", "s3transfer")
_STRIP_PREFIXES = ("boto3", "botocore", "s3transfer")
#: Lambda's limit for a function and all its layers, unzipped.
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
_PLATFORMS = {
    # Python 3.12+ runtimes run on Amazon Linux 2023 (glibc 2.34): manylinux wheels up to 2_34 fit.
    "arm64": ("manylinux_2_34_aarch64", "manylinux_2_28_aarch64", "manylinux2014_aarch64"),
    "x86_64": ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux2014_x86_64"),
}


@dataclass(frozen=True)
class LayerBuild:
    """A finished build: ``path`` holds ``python/``; ``cached`` says whether pip ran this time."""

    path: Path
    size_bytes: int
    cached: bool
    seconds: float


def layer_requirements(pyproject: Path = PROJECT_ROOT / "pyproject.toml") -> list[str]:
    """The package's runtime dependencies, pinned to the versions the tests ran against, boto3 excluded.

    Pinning to the installed version keeps the layer identical to what was tested, and makes the
    cache key change when the virtualenv is upgraded.
    """
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    requirements = []
    for spec in dependencies:
        name = spec.split(";")[0].split("[")[0]
        for sep in ("<", ">", "=", "!", "~", " "):
            name = name.split(sep)[0]
        if name.lower().replace("_", "-") in RUNTIME_PROVIDED:
            continue
        try:
            requirements.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            requirements.append(spec)
    return sorted(requirements)


def _shipped(package_dir: Path, path: Path) -> bool:
    parts = path.relative_to(package_dir).parts
    return bool(parts) and parts[0] not in NOT_SHIPPED and "__pycache__" not in parts


def _source_files(package_dir: Path) -> list[Path]:
    return sorted(
        p
        for p in package_dir.rglob("*")
        if p.is_file() and _shipped(package_dir, p) and p.suffix not in (".pyc", ".pyo")
    )


def source_hash(
    package_dir: Path, requirements: Iterable[str], architecture: str, python_version: str, with_dependencies: bool
) -> str:
    """What the build depends on; any change means a new build."""
    digest = hashlib.sha256()
    digest.update(f"{BUILD_FORMAT}|{architecture}|{python_version}|{with_dependencies}|".encode())
    digest.update("|".join(requirements).encode() if with_dependencies else b"-")
    for path in _source_files(package_dir):
        digest.update(path.relative_to(package_dir).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:20]


def _strip(python_dir: Path) -> None:
    """Remove what the runtime provides or never needs: boto*, caches, console scripts."""
    for path in list(python_dir.iterdir()):
        if path.name.lower().startswith(_STRIP_PREFIXES) or path.name == "bin":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    for cache in list(python_dir.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)
    for compiled in python_dir.rglob("*.py[co]"):
        compiled.unlink()


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _pip_install(target: Path, requirements: list[str], architecture: str, python_version: str) -> None:
    platform_args = [arg for platform in _PLATFORMS[architecture] for arg in ("--platform", platform)]
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--target",
        str(target),
        *platform_args,
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
        *requirements,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"Building the layer failed: pip could not fetch {requirements} for {architecture} / "
            f"Python {python_version} (PyPI is needed whenever shared/ or the requirements change):\n"
            f"{result.stderr.strip()[-2000:]}"
        )


def build_layer(
    *,
    package_dir: Path,
    cache_dir: Path,
    architecture: str,
    python_version: str,
    with_dependencies: bool = True,
    requirements: list[str] | None = None,
) -> LayerBuild:
    """Build (or reuse) ``<cache_dir>/<hash>/python`` holding ``package_dir`` and its dependencies.

    The build happens in a temporary directory renamed into place at the end, so an interrupted or
    concurrent build never leaves a half-filled cache entry behind.
    """
    started = time.monotonic()
    requirements = layer_requirements() if requirements is None else requirements
    key = source_hash(package_dir, requirements, architecture, python_version, with_dependencies)
    final = cache_dir / f"{architecture}-py{python_version.replace('.', '')}-{key}"
    if (final / "python" / package_dir.name).is_dir():
        return LayerBuild(final, directory_size(final), cached=True, seconds=time.monotonic() - started)
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=cache_dir))
    try:
        python_dir = staging / "python"
        python_dir.mkdir()
        if with_dependencies and requirements:
            _pip_install(python_dir, requirements, architecture, python_version)
        for source in _source_files(package_dir):
            target = python_dir / package_dir.name / source.relative_to(package_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        _strip(python_dir)
        try:
            os.replace(staging, final)
        except OSError:  # another synth finished the same build first: keep theirs
            if not (final / "python" / package_dir.name).is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return LayerBuild(final, directory_size(final), cached=False, seconds=time.monotonic() - started)


class SharedLayer(Construct):
    """The layer every function of the stack uses (``sosw`` + Powertools), for the chosen architecture."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        package_dir: Path = PROJECT_ROOT / "shared" / "sosw",
        cache_dir: Path = PROJECT_ROOT / ".cache" / "layer",
    ) -> None:
        super().__init__(scope, construct_id)
        self.runtime = getattr(lambda_.Runtime, f"PYTHON_{config.python_version.replace('.', '_')}")
        self.architecture = (
            lambda_.Architecture.ARM_64 if config.architecture == "arm64" else lambda_.Architecture.X86_64
        )
        self.build = self._build_contents(config, package_dir, cache_dir)
        self.layer = self._build_layer_version(config)

    def _build_contents(self, config: StackConfig, package_dir: Path, cache_dir: Path) -> LayerBuild:
        with_dependencies = config.layer_build == "pip"
        build = build_layer(
            package_dir=package_dir,
            cache_dir=cache_dir,
            architecture=config.architecture,
            python_version=config.python_version,
            with_dependencies=with_dependencies,
        )
        if build.size_bytes > LAMBDA_UNZIPPED_LIMIT:
            raise RuntimeError(f"The layer is {build.size_bytes / 1e6:.1f} MB unzipped: over Lambda's 250 MB limit")
        how = "reused from cache" if build.cached else f"built in {build.seconds:.1f} s"
        print(
            f"sosw layer ({config.architecture}, Python {config.python_version}): "
            f"{build.size_bytes / 1e6:.2f} MB unzipped, {how} ({build.path.name})",
            file=sys.stderr,
        )
        if not with_dependencies:
            print(
                "WARNING: layer_build is 'sources_only': the layer lacks its dependencies; do not deploy it",
                file=sys.stderr,
            )
        return build

    def _build_layer_version(self, config: StackConfig) -> lambda_.LayerVersion:
        return lambda_.LayerVersion(
            self,
            "Version",
            code=lambda_.Code.from_asset(str(self.build.path)),
            compatible_runtimes=[self.runtime],
            compatible_architectures=[self.architecture],
            description="sosw TaskManager package and its runtime dependencies (boto3 comes with the runtime)",
            # Old versions stay until the functions using them are updated; RETAIN would keep them forever.
            removal_policy=RemovalPolicy.DESTROY,
        )
