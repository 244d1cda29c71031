"""The CDK app: ``cdk deploy`` (the CLI runs this file), or ``python app.py`` to synthesize into cdk.out.

It reads cdk.json's ``sosw`` context once into a validated, frozen config, builds the stack, and
checks it with cdk-nag (AwsSolutions and Serverless packs): an unacknowledged error fails synth.
``-c stage=prod`` picks a stage, ``-c strict=true`` turns warnings that would fail a deploy into
errors, ``nag: false`` in the context skips cdk-nag.
"""

from __future__ import annotations

import os
import sys

import aws_cdk as cdk

from infra.config import ConfigError, StackConfig, load_cdk_json_context
from infra.stack import SoswStack


def build_app(context: dict | None = None) -> cdk.App:
    """The app with its one stack; ``context`` replaces cdk.json's (the CLI passes it in the environment)."""
    if context is None and "CDK_CONTEXT_JSON" not in os.environ:
        context = load_cdk_json_context()  # `python app.py`: nobody else reads cdk.json
    app = cdk.App(context=context, outdir=os.environ.get("CDK_OUTDIR", "cdk.out"))
    config = StackConfig.from_context(app.node)
    env = cdk.Environment(account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION"))
    SoswStack(app, config.stack_name, config=config, env=env)
    if config.nag:
        from cdk_nag import AwsSolutionsChecks, ServerlessChecks

        cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app), ServerlessChecks(app))
    return app


def main() -> None:
    try:
        app = build_app()
    except ConfigError as exc:
        sys.exit(f"synth failed: {exc}")
    app.synth()


if __name__ == "__main__":
    main()
