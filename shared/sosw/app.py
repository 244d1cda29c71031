"""sosw's ``sosw.app`` names that users' Lambdas import: ``LambdaGlobals``, ``global_vars``, ``get_lambda_handler``.

A sosw user's Lambda reads::

    global_vars = LambdaGlobals()
    lambda_handler = get_lambda_handler(Orchestrator, global_vars)

The processor is built once per container (``processor_class(custom_config=..., test=...)``) and called
with each event. ``get_config`` is where sosw read a function's config from (its ``config`` DynamoDB table);
here it gives nothing, the stack's SSM config being the base (``sosw.processors``). sosw users' tests patch
it (``patch("sosw.app.get_config")``): the processors look it up at call time, so a patch is honoured.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["LambdaGlobals", "get_config", "get_lambda_handler", "global_vars"]


class LambdaGlobals:
    """What a Lambda container keeps between invocations: the processor and the current context."""

    def __init__(self) -> None:
        self.processor: Any = None
        self.lambda_context: Any = None


def get_config(name: str) -> dict[str, Any]:
    """A function's config by name (sosw read its ``config`` table; the stack's config is in SSM instead)."""
    return {}


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
