"""What an object offers a caller, as data: every public name, what it is, and a method's parameters.

Imports nothing but the standard library, so both sides of the differential suite use it: ``sosw_side.py`` on
sosw 0.7.51's objects (in sosw's own virtualenv), ``test_sosw_surface.py`` on this package's.
"""

from __future__ import annotations

import inspect
from typing import Any

#: Dunder methods that are part of a processor's public face (sosw's processors are called with the event).
PUBLIC_DUNDERS = ("__call__",)


def describe(obj: Any) -> dict[str, dict[str, Any]]:
    """``{name: {"kind": "method" | "property" | "attribute" | "class", "params": [[name, kind], ...]}}``.

    A method's params are its parameters as bound (no ``self``), each with its kind
    (``POSITIONAL_OR_KEYWORD``, ``KEYWORD_ONLY``, ``VAR_POSITIONAL``, ...).
    """
    found: dict[str, dict[str, Any]] = {}
    for name in dir(obj):
        if name.startswith("_") and name not in PUBLIC_DUNDERS:
            continue
        try:
            static = inspect.getattr_static(obj, name)
        except AttributeError:  # a name only __getattr__ answers
            static = None
        if isinstance(static, property):
            found[name] = {"kind": "property"}
            continue
        if inspect.isclass(static):
            found[name] = {"kind": "class"}
            continue
        try:
            value = getattr(obj, name)
        except Exception:  # a lazy attribute that can't be built here is still there
            found[name] = {"kind": "attribute"}
            continue
        if callable(value) and (inspect.isroutine(value) or inspect.ismethod(value)):
            try:
                params = [[p.name, p.kind.name] for p in inspect.signature(value).parameters.values()]
            except (TypeError, ValueError):
                params = None
            found[name] = {"kind": "method", "params": params}
        else:
            found[name] = {"kind": "attribute"}
    return found
