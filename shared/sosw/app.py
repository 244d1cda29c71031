"""sosw's ``sosw.app``: the ``Processor`` base of every role, and the Lambda plumbing users' Lambdas import.

A sosw user's Lambda reads::

    global_vars = LambdaGlobals()
    lambda_handler = get_lambda_handler(Orchestrator, global_vars)

The processor is built once per container (``processor_class(custom_config=..., test=...)``) and called
with each event. ``get_config`` is where sosw read a function's config from (its ``config`` DynamoDB table);
here it gives nothing, the stack's SSM config being the base (``sosw.processors``). sosw users' tests patch
it (``patch("sosw.app.get_config")``): the processors look it up at call time, so a patch is honoured.

``Processor`` is sosw's plumbing, as sosw's own subclasses and its users' rely on it: the config (the class's
``DEFAULT_CONFIG``, then the function's config, then ``custom_config``, merged recursively), ``stats`` and
``result``, ``get_stats`` / ``reset_stats`` (with the ``*_client`` attributes' own, and sosw's ``total_``
counters that survive a reset), ``register_clients``, ``die``. The roles (``sosw.processors``) and the
``Worker`` derive from it; the EcologyManager and the TaskManager take its methods.
"""

from __future__ import annotations

import importlib
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import boto3
from aws_lambda_powertools import Logger

from sosw.config import deep_merge

__all__ = ["LambdaGlobals", "Processor", "get_config", "get_lambda_handler", "global_vars"]

logger = Logger(child=True)


class LambdaGlobals:
    """What a Lambda container keeps between invocations: the processor and the current context."""

    def __init__(self) -> None:
        self.processor: Any = None
        self.lambda_context: Any = None


def get_config(name: str) -> dict[str, Any]:
    """A function's config by name (sosw read its ``config`` table; the stack's config is in SSM instead)."""
    return {}


def _underscored(name: str) -> str:
    # sosw's camel_case_to_underscore: "DynamoDb" -> "dynamo_db", "Task" -> "task", "s3" -> "s3".
    first = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", str(name))
    return re.sub("([a-z0-9])([A-Z])", r"\1_\2", first).lower()


#: sosw's client names whose boto3 service is named otherwise.
_BOTO3_NAMES = {"dynamo_db": "dynamodb"}


class Processor:
    """sosw's base of every processor: ``Processor(custom_config=None, test=False)``, then ``processor(event)``."""

    DEFAULT_CONFIG: dict[str, Any] = {}

    aws_account: str | None = None
    aws_region: str | None = os.getenv("AWS_REGION")
    lambda_context: Any = None

    def __init__(self, custom_config: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        self.test = bool(kwargs.get("test")) or os.environ.get("STAGE") in ("test", "autotest")
        self._account_from_context()
        self.init_config(custom_config)
        self.stats: defaultdict[str, Any] = defaultdict(int)
        self.result: defaultdict[str, Any] = defaultdict(int)
        self.register_clients(self.config.get("init_clients", []))

    def _account_from_context(self) -> None:
        arn = getattr(global_vars.lambda_context, "invoked_function_arn", None)
        if isinstance(arn, str) and arn.count(":") >= 4:
            self.aws_account = arn.split(":")[4]

    def init_config(self, custom_config: Mapping[str, Any] | None = None) -> None:
        """``DEFAULT_CONFIG``, then ``get_config("<function name>_config")``, then ``custom_config``, merged."""
        function_config = self.get_config(f"{os.environ.get('AWS_LAMBDA_FUNCTION_NAME')}_config") or {}
        base = deep_merge(self.DEFAULT_CONFIG or {}, function_config)
        self.config: dict[str, Any] = deep_merge(base, custom_config or {})

    @staticmethod
    def get_config(name: str) -> dict[str, Any]:
        """The function's config by name: ``sosw.app.get_config``, looked up at call time (tests patch it)."""
        return globals()["get_config"](name)

    def register_clients(self, clients: Iterable[str]) -> None:
        """Set ``<name>_client`` for each name, found as sosw finds them: the class ``<Name>Manager`` (built with
        the config's ``<name>_config``) or ``<Name>Client`` of the module ``sosw.managers.<name>`` (``Task``: a
        TaskManager, ``Ecology``: an EcologyManager), else the boto3 client of that service (``s3``, ``sns``)."""
        for service in clients:
            name = _underscored(service)
            try:
                module = importlib.import_module(f"sosw.managers.{name}")
            except ImportError:
                # sosw's DynamoDbClient wrapper is not provided: a plain boto3 client stands in its place.
                setattr(self, f"{name}_client", boto3.client(_BOTO3_NAMES.get(name, name)))
                continue
            client_config = self.config.get(f"{name}_config")
            if hasattr(module, f"{service}Manager"):
                client = getattr(module, f"{service}Manager")(custom_config=client_config)
            elif hasattr(module, f"{service}Client"):
                client = getattr(module, f"{service}Client")(config=client_config) if client_config else None
            else:
                raise RuntimeError(f"sosw.managers.{name} has no {service}Manager nor {service}Client")
            setattr(self, f"{name}_client", client)

    def __call__(self, event: Any = None, reset_result: bool = True) -> Any:
        """Count the call and reset the result, as sosw's base does; subclasses do the work, then call this."""
        self.stats["processor_calls"] += 1
        if reset_result:
            self.result = defaultdict(int)

    def _clients(self) -> list[Any]:
        found = []
        for name in dir(self):
            if name.endswith("_client") and not name.startswith("_"):
                try:
                    client = getattr(self, name)
                except Exception:  # a client that can't be built here has no stats either
                    continue
                if client is not None and client is not self:
                    found.append(client)
        return found

    def get_stats(self, recursive: bool = True) -> dict[str, Any]:
        """The processor's counters, merged with those of its ``*_client`` attributes (``recursive``)."""
        if recursive:
            for client in self._clients():
                stats = getattr(client, "get_stats", None)
                if callable(stats):
                    try:
                        self.stats.update(stats())
                    except Exception:  # sosw's: a client without working stats is skipped
                        logger.debug("A client has no stats", extra={"client": type(client).__name__})
        return dict(self.stats)

    def reset_stats(self, recursive: bool = True) -> None:
        """Start new counters; each counter's value is added to its ``total_`` one, which survives, as in sosw.

        Keys listed in the config's ``lifetime_stats_params`` survive as they are.
        """
        lifetime = set(self.config.get("lifetime_stats_params", []))
        preserved: defaultdict[str, Any] = defaultdict(int)
        preserved.update({k: v for k, v in self.stats.items() if k in lifetime or k.startswith("total_")})
        for key, value in self.stats.items():
            if isinstance(value, (int, float)) and not (key in lifetime or key.startswith("total_")):
                preserved[f"total_{key}"] += value
        self.stats.clear()  # in place: a TaskManager's counters are shared with its steps
        self.stats.update(preserved)
        if recursive:
            for client in self._clients():
                reset = getattr(client, "reset_stats", None)
                if callable(reset):
                    try:
                        reset()
                    except Exception:  # sosw's: best effort
                        logger.debug("A client's stats could not be reset", extra={"client": type(client).__name__})

    def die(self, message: str = "Unknown Failure") -> None:
        """Log the failure and the counters, publish ``message`` to ``dead_sns_topic`` if one is configured, and
        end the process (``SystemExit(1)``), as sosw's ``die``."""
        logger.error(message, extra={"status": "failed", "stats": self.get_stats()})
        topic = self.config.get("dead_sns_topic")
        if topic:
            if not str(topic).startswith("arn:"):
                topic = f"arn:aws:sns:{self.aws_region}:{self.aws_account}:{topic}"
            subject = f"{os.environ.get('AWS_LAMBDA_FUNCTION_NAME', 'Some Function')} died"
            try:
                boto3.client("sns").publish(TopicArn=topic, Subject=subject[:100], Message=message)
            except Exception:
                logger.exception("Publishing the failure to SNS failed")
        raise SystemExit(1)


def get_lambda_handler(
    processor_class: Callable[..., Any],
    global_vars: LambdaGlobals | None = None,
    custom_config: Mapping[str, Any] | None = None,
) -> Callable[[Any, Any], Any]:
    """The Lambda entry point for a sosw-style processor class, as sosw's ``get_lambda_handler``."""
    holder = global_vars if global_vars is not None else LambdaGlobals()

    def lambda_handler(event: Any, context: Any) -> Any:
        holder.lambda_context = context
        if holder.processor is None:
            test = os.environ.get("STAGE") in ("test", "autotest")
            holder.processor = processor_class(custom_config=custom_config, test=test)
        result = holder.processor(event)
        if hasattr(holder.processor, "reset_stats"):
            holder.processor.reset_stats(recursive=True)
        return result

    return lambda_handler


#: sosw's module-level placeholder.
global_vars = LambdaGlobals()
