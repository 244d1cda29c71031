"""The stack's configuration: cdk.json's ``sosw`` context, read once, validated, frozen.

Every mistake a deploy would only reveal minutes later (a bad rate expression, a negative limit, a
worker with neither code nor ARN, an unknown key) fails here, at synth, with a message naming the
key, e.g. ``cdk.json context 'sosw.workers.resize.max_attempts': expected an integer >= 1, got 0``.

The labourer settings and the TaskManager config are checked by the runtime's own code
(``sosw.labourer.Labourer``, ``sosw.config.build_config``), so synth and the Lambdas can't disagree
about what is valid.

    config = StackConfig.from_context(app.node)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sosw.config import build_config
from sosw.errors import ConfigError as SoswConfigError
from sosw.labourer import SETTINGS as LABOURER_SETTINGS
from sosw.labourer import Labourer
from sosw.schema import table_schemas

__all__ = [
    "CONTEXT_KEY",
    "CONTROL_FUNCTIONS",
    "PROJECT_ROOT",
    "ConfigError",
    "FunctionSettings",
    "StackConfig",
    "TableSettings",
    "WorkerConfig",
    "load_cdk_json_context",
]

#: The repository root: code paths in cdk.json are relative to it, whatever the working directory.
PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONTEXT_KEY = "sosw"

#: The functions every stack has: their code directory under lambdas/ and their defaults.
CONTROL_FUNCTIONS: dict[str, dict[str, Any]] = {
    # Scheduled every minute; its own lease and the time-left check keep overlapping runs safe.
    # A run follows the work until there is none, up to its timeout, then hands over to a fresh one.
    "orchestrator": {"code": "lambdas/orchestrator", "memory_size": 512, "timeout": 300},
    "scavenger": {"code": "lambdas/scavenger", "memory_size": 256, "timeout": 120},
    # Called synchronously by every worker before it starts: short, but room for a cold start.
    "worker_assistant": {"code": "lambdas/worker_assistant", "memory_size": 256, "timeout": 15},
    "failure_handler": {"code": "lambdas/failure_handler", "memory_size": 256, "timeout": 15},
    # Jobs: creates a job's tasks, up to Lambda's limit a run, then goes on in a new invocation.
    "scheduler": {"code": "lambdas/scheduler", "memory_size": 512, "timeout": 900},
}

ARCHITECTURES = ("arm64", "x86_64")
PYTHON_VERSIONS = ("3.12", "3.13", "3.14")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
TABLE_ROLES = ("tasks", "retry", "closed", "meta", "leases")
#: CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (
    1,
    3,
    5,
    7,
    14,
    30,
    60,
    90,
    120,
    150,
    180,
    365,
    400,
    545,
    731,
    1096,
    1827,
    2192,
    2557,
    2922,
    3288,
    3653,
)
LAMBDA_MAX_TIMEOUT = 900
LAMBDA_MEMORY = (128, 10240)
#: Lambda's maximum event age for asynchronous invocations.
MAX_EVENT_AGE = (60, 21600)

_NAME_RE = re.compile(r"[A-Za-z0-9_-]*")
_STAGE_RE = re.compile(r"[a-z][a-z0-9-]{0,19}")
_FUNCTION_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FULL_ARN_RE = re.compile(
    r"arn:(?P<partition>aws[a-zA-Z-]*):lambda:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):function:"
    r"(?P<name>[A-Za-z0-9_-]{1,64})(?::(?P<qualifier>\$LATEST|[A-Za-z0-9_-]+))?"
)
_RATE_RE = re.compile(r"rate\((?P<value>\d+) (?P<unit>minute|minutes|hour|hours|day|days)\)")
_CRON_RE = re.compile(r"cron\((?P<fields>[^()]+)\)")
_PARAMETER_RE = re.compile(r"/[A-Za-z0-9_.\-/]{1,1010}")
_EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class ConfigError(ValueError):
    """A bad value in cdk.json's context; the message names the key."""


def _frozen(value: Any) -> Any:
    """A deep read-only copy, so a frozen dataclass really can't change under the stack."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain dicts and lists again (for JSON)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


class _Reader:
    """Reads one mapping of the context, naming ``sosw.<path>.<key>`` in every error."""

    def __init__(self, data: Any, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"cdk.json context '{path}': expected an object, got {data!r}")
        self.data = data
        self.path = path
        self.seen: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.path}.{key}"

    def fail(self, key: str, problem: str, value: Any) -> ConfigError:
        return ConfigError(f"cdk.json context '{self.key(key)}': {problem}, got {value!r}")

    def raw(self, key: str, default: Any = None) -> Any:
        self.seen.add(key)
        return self.data.get(key, default)

    def string(
        self,
        key: str,
        default: str | None,
        *,
        choices: tuple[str, ...] = (),
        pattern: re.Pattern[str] | None = None,
        what: str = "",
    ) -> str | None:
        value = self.raw(key, default)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.fail(key, "expected a string", value)
        if choices and value not in choices:
            raise self.fail(key, f"expected one of {list(choices)}", value)
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(key, f"expected {what or pattern.pattern}", value)
        return value

    def integer(self, key: str, default: int | None, *, minimum: int, maximum: int | None = None) -> int | None:
        value = self.raw(key, default)
        if value is None:
            return None
        bounds = f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"expected an integer {bounds}", value)
        if maximum is not None and value > maximum:
            raise self.fail(key, f"expected an integer {bounds}", value)
        return value

    def boolean(self, key: str, default: bool | None) -> bool | None:
        value = self.raw(key, default)
        if isinstance(value, str) and value.lower() in ("true", "false"):  # `cdk synth -c strict=true`
            value = value.lower() == "true"
        if value is not None and not isinstance(value, bool):
            raise self.fail(key, "expected true or false", value)
        return value

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self.raw(key, {})
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.fail(key, "expected an object", value)
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            raise ConfigError(
                f"cdk.json context '{self.key(unknown[0])}': unknown key; known keys here: {sorted(self.seen)}"
            )


def check_schedule(key: str, expression: Any) -> str:
    """EventBridge's ``rate(1 minute)`` / ``rate(5 minutes)`` or a six-field ``cron(...)``."""
    if not isinstance(expression, str):
        raise ConfigError(f"cdk.json context '{key}': expected a schedule expression string, got {expression!r}")
    rate = _RATE_RE.fullmatch(expression)
    if rate:
        value, unit = int(rate["value"]), rate["unit"]
        if value < 1 or (value == 1) != (not unit.endswith("s")):
            raise ConfigError(
                f"cdk.json context '{key}': a rate is 'rate(1 minute)' or 'rate(N minutes)' with N > 1 "
                f"(singular unit for 1, plural otherwise), got {expression!r}"
            )
        return expression
    cron = _CRON_RE.fullmatch(expression)
    if cron and len(cron["fields"].split()) == 6:
        return expression
    raise ConfigError(
        f"cdk.json context '{key}': expected 'rate(N unit)' or 'cron(min hour day month weekday year)', "
        f"got {expression!r}"
    )


def schedule_seconds(expression: str) -> int | None:
    """The interval of a rate expression in seconds (None for cron: no fixed interval)."""
    rate = _RATE_RE.fullmatch(expression)
    if not rate:
        return None
    unit = rate["unit"].rstrip("s")
    return int(rate["value"]) * {"minute": 60, "hour": 3600, "day": 86400}[unit]


#: CloudWatch's longest alarm evaluation window: one day for periods under an hour, seven days above.
ALARM_WINDOW_SECONDS = {True: 86400, False: 7 * 86400}


def silence_period_seconds(expression: str) -> int:
    """The period of a schedule's silence alarm: its interval, or an hour for cron schedules."""
    return schedule_seconds(expression) or 3600


def _check_silence_window(key: str, name: str, expression: str, periods: int) -> None:
    seconds = silence_period_seconds(expression)
    limit = ALARM_WINDOW_SECONDS[seconds < 3600]
    if seconds * periods > limit:
        raise ConfigError(
            f"cdk.json context '{key}': {periods} periods of {seconds} s (the {name} schedule) exceed the "
            f"{limit} s CloudWatch allows an alarm to evaluate, got {periods!r}"
        )


@dataclass(frozen=True)
class FunctionSettings:
    """Size and limits of one control function."""

    name: str  # the Lambda function name
    code: str  # directory relative to the project root
    memory_size: int
    timeout: int
    reserved_concurrency: int | None = None


@dataclass(frozen=True)
class TableSettings:
    billing: str  # on_demand | provisioned
    read_capacity: int
    write_capacity: int
    encryption: str  # aws_managed | customer_managed
    kms_key_arn: str | None  # customer_managed: use this key instead of creating one
    closed_task_ttl_days: int | None
    adopt: tuple[str, ...]  # roles whose existing tables are used instead of created


@dataclass(frozen=True)
class WorkerConfig:
    """One labourer and its function: created from ``code`` or imported by ``arn``."""

    name: str  # the labourer id (key of `labourers` in the TaskManager config)
    settings: Mapping[str, Any]  # labourer settings of DOMAIN.md, without `arn`
    code: str | None = None
    arn: str | None = None  # imported: a full ARN or a function name in the stack's account and region
    function_name: str | None = None  # created: the Lambda function name
    memory_size: int = 256
    timeout: int = 60
    environment: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    reserved_concurrency: int | None = None
    permissions_confirmed: bool = False  # imported: the owner has added the policy synth prints

    @property
    def imported(self) -> bool:
        return self.arn is not None

    @property
    def labourer_arn(self) -> str:
        """What the Orchestrator invokes: the function name for created workers (no tokens in the config)."""
        return self.arn if self.arn is not None else str(self.function_name)

    @property
    def cooldown(self) -> float:
        return self.settings.get("cooldown", LABOURER_SETTINGS["cooldown"])

    @property
    def duration(self) -> float:
        return self.settings.get("duration", LABOURER_SETTINGS["duration"])

    @property
    def max_event_age(self) -> int:
        """Lambda's maximum event age for this worker: its cooldown, within what Lambda accepts.

        An event older than the cooldown could start after the task was already given up as expired.
        """
        return int(min(max(self.cooldown, MAX_EVENT_AGE[0]), MAX_EVENT_AGE[1]))

    def arn_parts(self) -> dict[str, str | None] | None:
        """Partition, region, account, name and qualifier of a full ARN; None for a plain name."""
        match = _FULL_ARN_RE.fullmatch(self.arn or "")
        return match.groupdict() if match else None


@dataclass(frozen=True)
class StackConfig:
    """Everything the stack needs, validated. Build it with :meth:`from_context`."""

    stage: str
    prefix: str
    production: bool
    architecture: str
    python_version: str
    log_level: str
    log_retention_days: int
    service_name: str
    metrics_namespace: str
    config_parameter_name: str
    functions: Mapping[str, FunctionSettings]
    schedules: Mapping[str, str]
    tables: TableSettings
    workers: tuple[WorkerConfig, ...]
    task_manager: Mapping[str, Any]  # extra TaskManager config keys, merged into the SSM parameter
    alarm_email: str | None
    silence_periods: int
    queue_age_seconds: int
    dashboard: bool
    strict: bool
    layer_build: str  # pip | sources_only (tests: no dependencies, never deployable)
    nag: bool

    # ------------------------------------------------------------------ derived

    @property
    def stack_name(self) -> str:
        return f"sosw-{self.stage}"

    def task_manager_config(self) -> dict[str, Any]:
        """The TaskManager config of this stack, without labourers: table and index names, settings."""
        config = thaw(self.task_manager)
        dynamo = dict(config.get("dynamo_db_config", {}))
        dynamo.setdefault("table_name", f"{self.prefix}sosw_tasks")
        config["dynamo_db_config"] = dynamo
        for key, default in (
            ("sosw_retry_tasks_table", "sosw_retry_tasks"),
            ("sosw_closed_tasks_table", "sosw_closed_tasks"),
            ("sosw_tasks_meta_table", "sosw_tasks_meta"),
            ("sosw_orchestrator_leases_table", "sosw_orchestrator_leases"),
            ("sosw_jobs_table", "sosw_jobs"),
        ):
            config.setdefault(key, f"{self.prefix}{default}")
        if self.tables.closed_task_ttl_days is not None:
            config["closed_task_ttl_seconds"] = self.tables.closed_task_ttl_days * 86400
        return config

    def runtime_config(self) -> dict[str, Any]:
        """What the SSM parameter holds: the TaskManager config with every labourer."""
        config = self.task_manager_config()
        config["labourers"] = {w.name: {**thaw(w.settings), "arn": w.labourer_arn} for w in self.workers}
        return config

    # ------------------------------------------------------------------ reading

    @classmethod
    def from_context(cls, node: Any) -> StackConfig:
        """Read ``sosw`` from the app's context; ``-c stage=...`` and ``-c strict=true`` override it."""
        raw = node.try_get_context(CONTEXT_KEY)
        if raw is None:
            raise ConfigError(f"cdk.json context '{CONTEXT_KEY}': missing; it holds the stack's configuration")
        if isinstance(raw, str):  # `-c sosw='{...}'` arrives as a string
            try:
                raw = json.loads(raw)
            except ValueError as exc:
                raise ConfigError(f"cdk.json context '{CONTEXT_KEY}': not valid JSON ({exc})") from exc
        overrides = {k: node.try_get_context(k) for k in ("stage", "strict") if node.try_get_context(k) is not None}
        return cls.from_dict(raw, overrides)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> StackConfig:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"cdk.json context '{CONTEXT_KEY}': expected an object, got {raw!r}")
        merged = {**raw, **(overrides or {})}
        stage = merged.get("stage", "dev")
        if not isinstance(stage, str) or not _STAGE_RE.fullmatch(stage):
            raise ConfigError(
                f"cdk.json context '{CONTEXT_KEY}.stage': expected 1-20 lowercase letters, digits or '-', "
                f"starting with a letter, got {stage!r}"
            )
        stages = merged.get("stages", {})
        if not isinstance(stages, Mapping):
            raise ConfigError(f"cdk.json context '{CONTEXT_KEY}.stages': expected an object, got {stages!r}")
        stage_overrides = stages.get(stage, {})
        if not isinstance(stage_overrides, Mapping):
            raise ConfigError(
                f"cdk.json context '{CONTEXT_KEY}.stages.{stage}': expected an object, got {stage_overrides!r}"
            )
        if "stages" in stage_overrides or "stage" in stage_overrides:
            raise ConfigError(f"cdk.json context '{CONTEXT_KEY}.stages.{stage}': can't set 'stage' or 'stages'")
        # A stage's overrides replace whole top-level values (workers included), which keeps them predictable.
        try:
            return cls._read(_Reader({**merged, **stage_overrides}, CONTEXT_KEY))
        except ConfigError as exc:
            if not stage_overrides:
                raise
            raise ConfigError(f"{exc} (stage {stage!r}: values from '{CONTEXT_KEY}.stages.{stage}' apply)") from exc

    @classmethod
    def _read(cls, r: _Reader) -> StackConfig:
        stage = str(r.string("stage", "dev"))
        r.raw("stages")
        prefix = str(r.string("prefix", f"{stage}_", pattern=_NAME_RE, what="letters, digits, '_' or '-'"))
        production = r.boolean("production", stage == "prod")
        functions = cls._read_functions(_Reader(r.mapping("functions"), r.key("functions")), prefix)
        schedules_reader = _Reader(r.mapping("schedules"), r.key("schedules"))
        schedules = {
            name: check_schedule(schedules_reader.key(name), schedules_reader.raw(name, "rate(1 minute)"))
            for name in ("orchestrator", "scavenger")
        }
        schedules_reader.done()
        tables = cls._read_tables(_Reader(r.mapping("tables"), r.key("tables")))
        alarms = _Reader(r.mapping("alarms"), r.key("alarms"))
        alarm_email = alarms.string("email", None, pattern=_EMAIL_RE, what="an email address")
        silence_periods = alarms.integer("silence_periods", 3, minimum=1, maximum=100)
        queue_age_seconds = alarms.integer("queue_age_seconds", 3600, minimum=60, maximum=86_400 * 14)
        alarms.done()
        for name, expression in schedules.items():
            _check_silence_window(alarms.key("silence_periods"), name, expression, int(silence_periods or 3))
        task_manager = dict(r.mapping("task_manager"))
        if "labourers" in task_manager:
            raise ConfigError(
                f"cdk.json context '{r.key('task_manager.labourers')}': declare labourers under "
                f"'{r.key('workers')}', which also creates or imports their functions"
            )
        retention = r.integer("log_retention_days", 30, minimum=1)
        if retention not in LOG_RETENTION_DAYS:
            raise r.fail("log_retention_days", f"expected one of {list(LOG_RETENTION_DAYS)}", retention)
        workers = cls._read_workers(r.mapping("workers"), r.key("workers"), prefix, functions)
        config = cls(
            stage=stage,
            prefix=prefix,
            production=bool(production),
            architecture=str(r.string("architecture", "arm64", choices=ARCHITECTURES)),
            python_version=str(r.string("python_version", "3.14", choices=PYTHON_VERSIONS)),
            log_level=str(r.string("log_level", "INFO", choices=LOG_LEVELS)),
            log_retention_days=int(retention or 30),
            service_name=str(r.string("service_name", "sosw", pattern=re.compile(r"[A-Za-z0-9_.-]{1,64}"))),
            metrics_namespace=str(
                r.string("metrics_namespace", "sosw", pattern=re.compile(r"[A-Za-z0-9_.\-/#:]{1,255}"))
            ),
            config_parameter_name=str(
                r.string(
                    "config_parameter_name",
                    f"/sosw/{stage}/config",
                    pattern=_PARAMETER_RE,
                    what="an SSM parameter path such as /sosw/dev/config",
                )
            ),
            functions=MappingProxyType(functions),
            schedules=MappingProxyType(schedules),
            tables=tables,
            workers=workers,
            task_manager=_frozen(task_manager),
            alarm_email=alarm_email,
            silence_periods=int(silence_periods or 3),
            queue_age_seconds=int(queue_age_seconds or 3600),
            dashboard=bool(r.boolean("dashboard", True)),
            strict=bool(r.boolean("strict", False)),
            layer_build=str(r.string("layer_build", "pip", choices=("pip", "sources_only"))),
            nag=bool(r.boolean("nag", True)),
        )
        r.done()
        config._check_task_manager(r)
        return config

    @staticmethod
    def _read_functions(r: _Reader, prefix: str) -> dict[str, FunctionSettings]:
        functions = {}
        for role, defaults in CONTROL_FUNCTIONS.items():
            f = _Reader(r.mapping(role), r.key(role))
            default_name = f"{prefix}sosw_{role}"
            name = f.string("function_name", default_name, pattern=_FUNCTION_NAME_RE, what="a Lambda function name")
            code = str(f.string("code", defaults["code"]))
            _check_code_dir(f.key("code"), code)
            functions[role] = FunctionSettings(
                name=str(name),
                code=code,
                memory_size=int(
                    f.integer(
                        "memory_size", defaults["memory_size"], minimum=LAMBDA_MEMORY[0], maximum=LAMBDA_MEMORY[1]
                    )
                    or 0
                ),
                timeout=int(f.integer("timeout", defaults["timeout"], minimum=1, maximum=LAMBDA_MAX_TIMEOUT) or 0),
                # The Orchestrator needs two at least: a run following the work, and the stream's relay beside it.
                reserved_concurrency=f.integer(
                    "reserved_concurrency", None, minimum=2 if role == "orchestrator" else 1
                ),
            )
            f.done()
        r.done()
        return functions

    @staticmethod
    def _read_tables(r: _Reader) -> TableSettings:
        billing = str(r.string("billing", "on_demand", choices=("on_demand", "provisioned")))
        encryption = str(r.string("encryption", "aws_managed", choices=("aws_managed", "customer_managed")))
        kms_key_arn = r.string(
            "kms_key_arn",
            None,
            pattern=re.compile(r"arn:aws[a-zA-Z-]*:kms:[a-z0-9-]+:\d{12}:key/.+"),
            what="a KMS key ARN",
        )
        if kms_key_arn and encryption != "customer_managed":
            raise r.fail("kms_key_arn", "only used with encryption 'customer_managed'", kms_key_arn)
        adopt = r.raw("adopt", [])
        if (
            not isinstance(adopt, list)
            or any(role not in TABLE_ROLES for role in adopt)
            or len(set(adopt)) != len(adopt)
        ):
            raise r.fail("adopt", f"expected a list of distinct table roles from {list(TABLE_ROLES)}", adopt)
        settings = TableSettings(
            billing=billing,
            read_capacity=int(r.integer("read_capacity", 5, minimum=1) or 5),
            write_capacity=int(r.integer("write_capacity", 5, minimum=1) or 5),
            encryption=encryption,
            kms_key_arn=kms_key_arn,
            closed_task_ttl_days=r.integer("closed_task_ttl_days", None, minimum=1),
            adopt=tuple(adopt),
        )
        r.done()
        return settings

    @staticmethod
    def _read_workers(
        raw: Mapping[str, Any], path: str, prefix: str, functions: Mapping[str, FunctionSettings]
    ) -> tuple[WorkerConfig, ...]:
        workers = []
        taken = {f.name: f"{path.rsplit('.', 1)[0]}.functions" for f in functions.values()}
        for name, entry in raw.items():
            workers.append(_read_worker(name, entry, f"{path}.{name}", prefix, taken))
        return tuple(workers)

    def _check_task_manager(self, r: _Reader) -> None:
        """The runtime's own validation of the whole TaskManager config, and of the table names it yields."""
        try:
            build_config(self.runtime_config())
            schemas = table_schemas(self.task_manager_config())
        except SoswConfigError as exc:
            raise ConfigError(f"cdk.json context '{r.key('task_manager')}': {exc}") from exc
        for schema in schemas.values():
            if not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", schema.name):
                raise ConfigError(
                    f"cdk.json context '{r.key('prefix')}' / '{r.key('task_manager')}': table name "
                    f"{schema.name!r} ({schema.role}) is not a valid DynamoDB table name"
                )


_WORKER_KEYS = (
    "code",
    "arn",
    "function_name",
    "memory_size",
    "timeout",
    "environment",
    "reserved_concurrency",
    "permissions_confirmed",
)


def _check_code_dir(key: str, code: str) -> None:
    path = PROJECT_ROOT / code
    if Path(code).is_absolute() or ".." in Path(code).parts:
        raise ConfigError(f"cdk.json context '{key}': expected a directory relative to the project root, got {code!r}")
    if not (path / "app.py").is_file():
        raise ConfigError(
            f"cdk.json context '{key}': {code!r} must be a directory holding app.py with handler(event, context)"
        )


def _read_worker(name: str, entry: Any, path: str, prefix: str, taken: dict[str, str]) -> WorkerConfig:
    r = _Reader(entry if entry is not None else {}, path)
    unknown = sorted(set(r.data) - set(_WORKER_KEYS) - set(LABOURER_SETTINGS))
    if unknown:
        raise ConfigError(
            f"cdk.json context '{r.key(unknown[0])}': unknown key; a worker takes {list(_WORKER_KEYS)} "
            f"and the labourer settings {sorted(k for k in LABOURER_SETTINGS if k != 'arn')}"
        )
    settings = {k: v for k, v in r.data.items() if k in LABOURER_SETTINGS and k != "arn"}
    arn = r.string("arn", None)
    if arn is not None and "code" in r.data:
        raise r.fail("arn", "give either 'code' (the stack creates the function) or 'arn' (an existing one)", arn)
    try:
        # The runtime's validation: ids, numbers, retry policy, health metrics; errors name <labourer>.<setting>.
        Labourer(id=name, arn=arn, **settings)
    except SoswConfigError as exc:
        raise ConfigError(f"cdk.json context '{path}': {exc}") from exc
    except TypeError as exc:  # e.g. a non-string key
        raise ConfigError(f"cdk.json context '{path}': {exc}") from exc
    if arn is not None:
        if arn == "" or not (_FULL_ARN_RE.fullmatch(arn) or _FUNCTION_NAME_RE.fullmatch(arn)):
            raise r.fail(
                "arn",
                "expected a full Lambda function ARN (arn:aws:lambda:<region>:<account>:function:<name>) "
                "or a function name in this stack's account and region",
                arn,
            )
        for key in ("function_name", "memory_size", "timeout", "environment", "reserved_concurrency"):
            if key in r.data:
                raise r.fail(key, "only for a worker the stack creates (this one is imported by 'arn')", r.data[key])
        permissions = r.boolean("permissions_confirmed", False)
        return WorkerConfig(name=name, settings=_frozen(settings), arn=arn, permissions_confirmed=bool(permissions))
    if "permissions_confirmed" in r.data:
        raise r.fail(
            "permissions_confirmed", "only for an imported worker (one with 'arn')", r.data["permissions_confirmed"]
        )
    code = str(r.string("code", "lambdas/worker"))
    _check_code_dir(r.key("code"), code)
    function_name = str(r.string("function_name", f"{prefix}{name}"))
    if not _FUNCTION_NAME_RE.fullmatch(function_name):
        raise r.fail(
            "function_name", "expected a Lambda function name (1-64 letters, digits, '-' or '_')", function_name
        )
    if function_name in taken:
        raise r.fail("function_name", f"already used by {taken[function_name]}", function_name)
    taken[function_name] = path
    duration = settings.get("duration", LABOURER_SETTINGS["duration"])
    default_timeout = int(max(1, min(duration, LAMBDA_MAX_TIMEOUT)))
    timeout = r.integer("timeout", default_timeout, minimum=1, maximum=LAMBDA_MAX_TIMEOUT)
    if timeout is not None and timeout > duration:
        # The Scavenger would take a task for expired while its worker may still be running: a duplicate.
        raise r.fail(
            "timeout",
            f"must not exceed the labourer's duration ({duration} s), or a task would be "
            "retried while its worker still runs",
            timeout,
        )
    environment = r.mapping("environment")
    for key, value in environment.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", key) or not isinstance(value, str):
            raise ConfigError(
                f"cdk.json context '{r.key('environment')}.{key}': expected a string value under "
                f"a valid variable name, got {value!r}"
            )
    return WorkerConfig(
        name=name,
        settings=_frozen(settings),
        code=code,
        function_name=function_name,
        memory_size=int(r.integer("memory_size", 256, minimum=LAMBDA_MEMORY[0], maximum=LAMBDA_MEMORY[1]) or 256),
        timeout=int(timeout or 1),
        environment=_frozen(dict(environment)),
        reserved_concurrency=r.integer("reserved_concurrency", None, minimum=1),
    )


def load_cdk_json_context(path: Path | None = None) -> dict[str, Any]:
    """The ``context`` of cdk.json: what the CDK CLI would pass, for ``python app.py`` and the tests."""
    cdk_json = path or PROJECT_ROOT / "cdk.json"
    try:
        return dict(json.loads(cdk_json.read_text())["context"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{cdk_json.name}: can't read its 'context' ({exc})") from exc
