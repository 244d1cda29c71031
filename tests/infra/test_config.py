"""cdk.json's context: read once, validated, frozen; every mistake names its key."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from infra.config import ConfigError, StackConfig
from tests.infra.conftest import cdk_context


def _config(**sosw: Any) -> StackConfig:
    return StackConfig.from_dict(cdk_context(**sosw)["sosw"])


def _worker(**settings: Any) -> dict[str, Any]:
    return {"workers": {"resize": {"timeout": 60, "duration": 60, **settings}}}


def test_the_shipped_cdk_json_is_valid_and_frozen():
    config = _config()
    assert config.stage == "dev" and config.prefix == "dev_" and not config.production
    assert [w.name for w in config.workers] == ["example_worker"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.stage = "prod"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.workers[0].settings["max_attempts"] = 9  # type: ignore[index]


def test_a_stage_picks_its_overrides():
    raw = cdk_context()["sosw"]
    prod = StackConfig.from_dict(raw, {"stage": "prod", "strict": "true"})
    assert (prod.stage, prod.prefix, prod.production, prod.log_retention_days, prod.strict) == (
        "prod",
        "prod_",
        True,
        365,
        True,
    )
    assert prod.functions["worker_assistant"].name == "prod_sosw_worker_assistant"


@pytest.mark.parametrize(
    ("overrides", "key", "problem"),
    [
        ({"colour": "blue"}, "sosw.colour", "unknown key"),
        ({"tables": {"billing": "free"}}, "sosw.tables.billing", "expected one of"),
        ({"tables": {"adopt": ["queue"]}}, "sosw.tables.adopt", "table roles"),
        (
            {"tables": {"kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/x"}},
            "sosw.tables.kms_key_arn",
            "customer_managed",
        ),
        ({"schedules": {"orchestrator": "rate(1 minutes)"}}, "sosw.schedules.orchestrator", "singular unit"),
        ({"schedules": {"scavenger": "rate(5 minute)"}}, "sosw.schedules.scavenger", "singular unit"),
        ({"schedules": {"scavenger": "cron(* * * *)"}}, "sosw.schedules.scavenger", "cron(min hour"),
        ({"schedules": {"scavenger": "every minute"}}, "sosw.schedules.scavenger", "rate(N unit)"),
        ({"schedules": {"hourly": "rate(1 hour)"}}, "sosw.schedules.hourly", "unknown key"),
        ({"log_retention_days": 31}, "sosw.log_retention_days", "expected one of"),
        ({"architecture": "sparc"}, "sosw.architecture", "expected one of"),
        ({"stage": "Prod!"}, "sosw.stage", "lowercase"),
        ({"prefix": "dev prefix"}, "sosw.prefix", "letters, digits"),
        (
            {"functions": {"orchestrator": {"memory_size": 64}}},
            "sosw.functions.orchestrator.memory_size",
            "between 128",
        ),
        ({"functions": {"scavenger": {"timeout": 901}}}, "sosw.functions.scavenger.timeout", "between 1 and 900"),
        (
            {"functions": {"scavenger": {"reserved_concurrency": -1}}},
            "sosw.functions.scavenger.reserved_concurrency",
            ">= 1",
        ),
        (
            # a run following the work and the stream's relay beside it
            {"functions": {"orchestrator": {"reserved_concurrency": 1}}},
            "sosw.functions.orchestrator.reserved_concurrency",
            ">= 2",
        ),
        ({"functions": {"janitor": {}}}, "sosw.functions.janitor", "unknown key"),
        ({"alarms": {"email": "nobody"}}, "sosw.alarms.email", "email address"),
        ({"alarms": {"silence_periods": 0}}, "sosw.alarms.silence_periods", "between 1 and 100"),
        (
            {"alarms": {"silence_periods": 50}, "schedules": {"scavenger": "rate(30 minutes)"}},
            "sosw.alarms.silence_periods",
            "exceed the 86400 s",
        ),
        ({"task_manager": {"greenfield_task_step": 0}}, "sosw.task_manager", "greenfield_task_step"),
        ({"task_manager": {"labourers": {}}}, "sosw.task_manager.labourers", "declare labourers under"),
        ({"task_manager": {"dynamo_db_config": {"table_name": "a b"}}}, "sosw.task_manager", "not a valid DynamoDB"),
        (_worker(max_attempts=0), "sosw.workers.resize", "resize.max_attempts"),
        (_worker(max_simultaneous_invocations=-1), "sosw.workers.resize", "resize.max_simultaneous_invocations"),
        (_worker(retry_policy="fibonacci"), "sosw.workers.resize", "resize.retry_policy"),
        (_worker(colour="red"), "sosw.workers.resize.colour", "unknown key"),
        (_worker(code="lambdas/nowhere"), "sosw.workers.resize.code", "holding app.py"),
        (_worker(code="../elsewhere"), "sosw.workers.resize.code", "relative to the project root"),
        (_worker(timeout=120), "sosw.workers.resize.timeout", "must not exceed the labourer's duration"),
        (_worker(environment={"bad-name": "x"}), "sosw.workers.resize.environment.bad-name", "valid variable name"),
        (_worker(function_name="dev_sosw_orchestrator"), "sosw.workers.resize.function_name", "already used"),
        (_worker(permissions_confirmed=True), "sosw.workers.resize.permissions_confirmed", "only for an imported"),
        ({"workers": {"legacy": {"arn": ""}}}, "sosw.workers.legacy", "arn"),
        ({"workers": {"legacy": {"arn": "arn:aws:s3:::bucket"}}}, "sosw.workers.legacy", "arn"),
        (
            {"workers": {"legacy": {"arn": "legacy", "code": "lambdas/worker"}}},
            "sosw.workers.legacy.arn",
            "either 'code'",
        ),
        ({"workers": {"legacy": {"arn": "legacy", "timeout": 30}}}, "sosw.workers.legacy.timeout", "only for a worker"),
        ({"workers": {"bad name": {}}}, "sosw.workers.bad name", "labourer id"),
    ],
)
def test_a_bad_value_fails_naming_its_key(overrides: dict[str, Any], key: str, problem: str):
    with pytest.raises(ConfigError) as raised:
        _config(**overrides)
    message = str(raised.value)
    assert f"'{key}" in message, message
    assert problem in message, message


def test_a_missing_or_malformed_sosw_context_is_named():
    from aws_cdk import App

    with pytest.raises(ConfigError, match="context 'sosw': missing"):
        StackConfig.from_context(App(context={}).node)
    with pytest.raises(ConfigError, match="context 'sosw': not valid JSON"):
        StackConfig.from_context(App(context={"sosw": "{nope"}).node)


def test_a_worker_without_code_or_arn_is_the_example_worker():
    (worker,) = _config(workers={"plain": {}}).workers
    assert (worker.code, worker.function_name, worker.timeout, worker.imported) == (
        "lambdas/worker",
        "dev_plain",
        900,
        False,
    )


def test_an_error_in_a_stage_override_points_at_the_stage():
    raw = cdk_context()["sosw"]
    raw["stages"]["prod"]["log_retention_days"] = 31
    with pytest.raises(ConfigError, match=r"'sosw.log_retention_days'.*'sosw.stages.prod' apply"):
        StackConfig.from_dict(raw, {"stage": "prod"})
