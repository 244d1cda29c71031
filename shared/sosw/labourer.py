"""A Labourer: one type of worker (one Lambda function) and its settings.

Settings are those of the table in DOMAIN.md. Registration (``TaskManager.register_labourers``) adds
run-time attributes (``start``, ``invoked``, ``expired``, ``health``, ...) with
:meth:`Labourer.set_custom_attribute`; reading one before it is set raises ``AttributeError``,
so code that forgot to register fails loudly instead of using a stale window.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sosw.errors import ConfigError

# AWS's documented pattern for Invoke's FunctionName: a name, a partial ARN or a full ARN,
# optionally qualified with a version or alias.
_FUNCTION_NAME_RE = re.compile(
    r"(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:)?(\d{12}:)?"
    r"(function:)?([a-zA-Z0-9-_.]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?"
)
_ID_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")

RETRY_POLICIES = ("linear", "exponential")

#: Settings a labourer accepts, with their defaults (None: not set, use the global or derived value).
SETTINGS: dict[str, Any] = {
    "arn": None,
    "max_simultaneous_invocations": None,  # falls back to the global config value (1)
    "max_attempts": None,  # falls back to max_attempts_<id>, then the global config value (3)
    "duration": 900,
    "cooldown": 300,
    "max_duration": None,  # read from the worker's Lambda Timeout at registration when not set
    "retry_policy": "linear",
    "retry_base": 60,
    "retry_cap": 3600,
    "never_retry_errors": (),
    "max_invocations_per_minute": None,
    "health_metrics": {},
}

#: Attributes that registration sets.
CUSTOM_ATTRIBUTES = ("start", "invoked", "expired", "health", "max_attempts", "average_duration", "max_duration")


def function_name(arn: str) -> str:
    """The function name in what a labourer invokes: a name, or a partial or full ARN, maybe qualified.

    >>> function_name("arn:aws:lambda:eu-west-1:123456789012:function:legacy:live")
    'legacy'
    """
    match = _FUNCTION_NAME_RE.fullmatch(arn)
    return match.group(10) if match else arn  # the ([a-zA-Z0-9-_.]+) group


def _require_int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{key}: expected an integer >= {minimum}, got {value!r}")
    return value


def _require_number(key: str, value: Any, minimum: float, *, strict: bool) -> float:
    bad = isinstance(value, bool) or not isinstance(value, (int, float))
    if bad or value < minimum or (strict and value == minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ConfigError(f"{key}: expected a number {bound}, got {value!r}")
    return value


class Labourer:
    """A worker type. ``Labourer(id="resize_images", max_simultaneous_invocations=10)``.

    The settings of DOMAIN.md are validated (a bad value is a ``ConfigError`` naming it). As in sosw, any
    other keyword is kept as a custom attribute (``Labourer(id="x", arn="y", some_attr="yes").some_attr``):
    the TaskManager config goes through :meth:`from_config`, where an unknown setting is a typo and refused.
    An id given as an int (a Python config keyed by numbers) becomes its text, as it is stored in the tables.
    """

    #: sosw's class attributes: its identity fields, the attributes registration sets, and its two defaults.
    ATTRIBUTES = ("id", "arn")
    CUSTOM_ATTRIBUTES = (
        "arn",
        "start",
        "invoked",
        "expired",
        "health",
        "health_metrics",
        "average_duration",
        "max_duration",
        "max_attempts",
        "max_simultaneous_invocations",
    )
    DEFAULTS = {"duration": SETTINGS["duration"], "cooldown": SETTINGS["cooldown"]}

    def __init__(self, id: str | int, arn: str | None = None, **settings: Any) -> None:
        if isinstance(id, int) and not isinstance(id, bool):
            id = str(id)
        if not isinstance(id, str) or not _ID_RE.fullmatch(id):
            raise ConfigError(f"labourer id: expected 1-64 letters, digits, '-' or '_', got {id!r}")
        extra = {k: settings.pop(k) for k in list(settings) if k not in SETTINGS}
        self.id = id
        values = {**SETTINGS, **settings, "arn": arn}
        self.arn = self._check_arn(values["arn"] if values["arn"] is not None else id)
        self.duration = _require_number(f"{id}.duration", values["duration"], 0, strict=True)
        self.cooldown = _require_number(f"{id}.cooldown", values["cooldown"], 0, strict=False)
        self.retry_base = _require_number(f"{id}.retry_base", values["retry_base"], 0, strict=True)
        self.retry_cap = _require_number(f"{id}.retry_cap", values["retry_cap"], self.retry_base, strict=False)
        if values["retry_policy"] not in RETRY_POLICIES:
            raise ConfigError(f"{id}.retry_policy: expected one of {RETRY_POLICIES}, got {values['retry_policy']!r}")
        self.retry_policy: str = values["retry_policy"]
        errors = values["never_retry_errors"]
        if isinstance(errors, str) or not all(isinstance(e, str) for e in errors):
            raise ConfigError(f"{id}.never_retry_errors: expected a list of error type names, got {errors!r}")
        self.never_retry_errors = tuple(errors)
        if not isinstance(values["health_metrics"], dict):
            raise ConfigError(f"{id}.health_metrics: expected a dict, got {values['health_metrics']!r}")
        self.health_metrics: dict[str, Any] = values["health_metrics"]
        self.max_simultaneous_invocations = self._optional_int("max_simultaneous_invocations", values, 0)
        self.max_invocations_per_minute = self._optional_int("max_invocations_per_minute", values, 1)
        self._custom: dict[str, Any] = {}
        if values["max_attempts"] is not None:
            self._custom["max_attempts"] = _require_int(f"{id}.max_attempts", values["max_attempts"], 1)
        if values["max_duration"] is not None:
            self._custom["max_duration"] = _require_number(f"{id}.max_duration", values["max_duration"], 0, strict=True)
        # sosw's custom attributes: registration-time names are set as registration sets them, the rest kept apart
        self._extra = {k: v for k, v in extra.items() if k not in CUSTOM_ATTRIBUTES}
        self._custom.update({k: v for k, v in extra.items() if k in CUSTOM_ATTRIBUTES})

    @classmethod
    def from_config(cls, id: str | int, settings: Mapping[str, Any] | None) -> Labourer:
        """A labourer of the TaskManager config (``labourers: {id: settings}``): only known settings.

        A key that is not a setting is a typo here, refused with a ``ConfigError`` naming it (sosw refuses
        such keys too, at registration, with a ValueError).
        """
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise ConfigError(f"labourer {id!r}: unknown setting(s) {unknown}; known settings: {sorted(SETTINGS)}")
        return cls(id=id, **settings)

    def _optional_int(self, key: str, values: dict[str, Any], minimum: int) -> int | None:
        value = values[key]
        return None if value is None else _require_int(f"{self.id}.{key}", value, minimum)

    def _check_arn(self, arn: Any) -> str:
        if not isinstance(arn, str) or len(arn) > 170 or not _FUNCTION_NAME_RE.fullmatch(arn):
            raise ConfigError(
                f"{self.id}.arn: expected a Lambda function name or ARN "
                f"(arn:aws:lambda:<region>:<account>:function:<name>), got {arn!r}"
            )
        return arn

    def set_defaults(self) -> None:
        """sosw's: ``DEFAULTS`` for ``duration`` and ``cooldown`` where they are unset or zero (construction
        already sets them; sosw's constructor calls this)."""
        for key, value in self.DEFAULTS.items():
            if not getattr(self, key, None):
                setattr(self, key, value)

    def set_custom_attribute(self, name: str, value: Any) -> None:
        """Set a run-time attribute (what registration does)."""
        self._custom[name] = value

    def get_attr(self, name: str) -> Any:
        """A run-time (or custom) attribute; ``AttributeError`` if registration has not set it."""
        if name in self._custom:
            return self._custom[name]
        if name in self._extra:
            return self._extra[name]
        raise AttributeError(
            f"Labourer {self.id!r} has no attribute {name!r} yet: call TaskManager.register_labourers()"
        )

    def has_attr(self, name: str) -> bool:
        return name in self._custom

    def __getattr__(self, name: str) -> Any:
        # Registered and custom attributes read like plain ones (labourer.start, labourer.some_attr), as in sosw.
        if name.startswith("_"):
            raise AttributeError(name)
        if name in CUSTOM_ATTRIBUTES or name in self._custom or name in self._extra:
            return self.get_attr(name)
        raise AttributeError(f"Labourer {self.id!r} has no attribute {name!r}")

    def __repr__(self) -> str:
        return f"Labourer(id={self.id!r}, arn={self.arn!r})"
