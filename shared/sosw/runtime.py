"""What every Lambda handler needs: the config from SSM and a TaskManager, built once per container.

The config is the TaskManager's JSON config (tables, labourers, settings) in the SSM parameter named
by ``SOSW_CONFIG_PARAMETER``, read with Powertools Parameters (cached ``max_age`` seconds), since
Lambda environment variables are capped at 4 KB.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from sosw import aws
from sosw.dispatch import ORCHESTRATOR_FUNCTION_ENV, SCAVENGER_FUNCTION_ENV, Waker
from sosw.errors import ConfigError
from sosw.managers.task import TaskManager

CONFIG_PARAMETER_ENV = "SOSW_CONFIG_PARAMETER"
CONFIG_MAX_AGE_SECONDS = 60


def load_config() -> dict[str, Any]:
    name = os.environ.get(CONFIG_PARAMETER_ENV)
    if not name:
        raise ConfigError(f"{CONFIG_PARAMETER_ENV}: not set; it names the SSM parameter holding the sosw config")
    from aws_lambda_powertools.utilities import parameters

    config = parameters.get_parameter(name, transform="json", max_age=CONFIG_MAX_AGE_SECONDS)
    if not isinstance(config, dict):
        raise ConfigError(f"{name}: the SSM parameter must hold a JSON object")
    return config


@cache
def _clients() -> tuple[Any, Any]:
    # Reused across warm invocations: creating boto3 clients costs tens of milliseconds.
    return aws.dynamodb_client(), aws.lambda_client()


def task_manager() -> TaskManager:
    """A TaskManager on the current config (re-read at most every minute) and the container's clients."""
    dynamodb, lambda_ = _clients()
    return TaskManager(load_config(), dynamodb_client=dynamodb, lambda_client=lambda_)


@cache
def waker(target: str) -> Waker:
    """The container's wake-ups of the Orchestrator (``"orchestrator"``) or the Scavenger (``"scavenger"``).

    One per container, so its coalescing spans warm invocations; no function named in the environment
    (``SOSW_ORCHESTRATOR_FUNCTION``, ``SOSW_SCAVENGER_FUNCTION``) means no wake-ups. ``"relay"`` wakes the
    Orchestrator for new tasks without coalescing: the stream's batching already groups them, and a
    dropped wake-up could leave a new task for the next minute.
    """
    env = {"orchestrator": ORCHESTRATOR_FUNCTION_ENV, "relay": ORCHESTRATOR_FUNCTION_ENV}
    env["scavenger"] = SCAVENGER_FUNCTION_ENV
    return Waker(_clients()[1], os.environ.get(env[target]), interval=0.0 if target == "relay" else 1.0)
