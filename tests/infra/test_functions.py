"""The functions: shared defaults, environment, logs, asynchronous configs and the SSM config."""

from __future__ import annotations

import pytest
from aws_cdk import App, Stack

from infra.config import ConfigError, StackConfig
from infra.lambda_function import ENVIRONMENT_LIMIT_BYTES, TOKEN_SIZE_BOUND, SoswFunction, environment_size
from infra.parameter import ConfigParameter
from sosw.config import build_config
from sosw.managers.task import TaskManager
from tests.infra.conftest import LEGACY_ARN, Synth, cdk_context, parameter_config

CONTROL = ("orchestrator", "scavenger", "worker_assistant", "failure_handler")
POWERTOOLS = {"POWERTOOLS_SERVICE_NAME": "sosw", "POWERTOOLS_METRICS_NAMESPACE": "sosw", "POWERTOOLS_LOG_LEVEL": "INFO"}


def test_every_function_runs_the_current_python_on_arm_with_tracing_json_logs_and_the_layer(dev: Synth, prod: Synth):
    for synth in (dev, prod):
        layer = {"Ref": synth.logical_id("AWS::Lambda::LayerVersion")}
        functions = synth.of_type("AWS::Lambda::Function").values()
        assert len(functions) == len(synth.config.functions) + len([w for w in synth.config.workers if not w.imported])
        for function in functions:
            props = function["Properties"]
            assert props["Runtime"] == "python3.14"
            assert props["Architectures"] == ["arm64"]
            assert props["Handler"] == "app.handler"
            assert props["TracingConfig"] == {"Mode": "Active"}
            assert props["Layers"] == [layer]
            assert props["LoggingConfig"]["LogFormat"] == "JSON"


def test_the_layer_matches_the_functions_runtime_and_architecture(dev: Synth):
    (layer,) = dev.of_type("AWS::Lambda::LayerVersion").values()
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.14"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]


def test_each_function_logs_to_its_own_group_with_the_configured_retention(dev: Synth, prod: Synth):
    for synth, days, policy in ((dev, 30, "Delete"), (prod, 365, "Retain")):
        groups = synth.of_type("AWS::Logs::LogGroup")
        for name in [f["Properties"]["FunctionName"] for f in synth.of_type("AWS::Lambda::Function").values()]:
            group_ref = synth.function(name)[1]["LoggingConfig"]["LogGroup"]
            group = groups[group_ref["Ref"]]
            assert group["Properties"]["LogGroupName"] == f"/sosw/{synth.config.stage}/{name}"
            assert group["Properties"]["RetentionInDays"] == days
            assert group["DeletionPolicy"] == policy


def test_control_functions_get_the_config_parameter_and_powertools_settings(dev: Synth):
    for role in CONTROL:
        env = dev.function(f"dev_sosw_{role}")[1]["Environment"]["Variables"]
        expected = {"SOSW_CONFIG_PARAMETER": "/sosw/dev/config", **POWERTOOLS}
        # Where wake-ups go: every control function may wake the Orchestrator; reporters the Scavenger too
        expected["SOSW_ORCHESTRATOR_FUNCTION"] = "dev_sosw_orchestrator"
        if role in ("worker_assistant", "failure_handler"):
            expected["SOSW_SCAVENGER_FUNCTION"] = "dev_sosw_scavenger"
        if role == "scavenger":
            topic = next(
                k for k, t in dev.of_type("AWS::SNS::Topic").items() if "dead" in t["Properties"]["DisplayName"]
            )
            expected["SOSW_DEAD_LETTER_TOPIC_ARN"] = {"Ref": topic}
        assert env == expected, role


def test_workers_get_the_assistant_name_and_their_own_variables_but_no_config(dev: Synth, prod: Synth):
    assert dev.function("dev_example_worker")[1]["Environment"]["Variables"] == {
        "SOSW_WORKER_ASSISTANT_FUNCTION": "dev_sosw_worker_assistant",
        **POWERTOOLS,
    }
    resize = prod.function("prod_resize")[1]["Environment"]["Variables"]
    assert resize["BUCKET"] == "images" and resize["SOSW_WORKER_ASSISTANT_FUNCTION"] == "prod_sosw_worker_assistant"


def test_sizes_timeouts_and_reserved_concurrency_follow_the_config(dev: Synth, prod: Synth):
    orchestrator = dev.function("dev_sosw_orchestrator")[1]
    assert (orchestrator["MemorySize"], orchestrator["Timeout"]) == (512, 300)  # a run follows the work
    assert (dev.function("dev_example_worker")[1]["Timeout"]) == 60
    # Reserved concurrency only when asked for: accounts with a low quota reject it
    assert all(
        "ReservedConcurrentExecutions" not in f["Properties"] for f in dev.of_type("AWS::Lambda::Function").values()
    )
    assert prod.function("prod_sosw_orchestrator")[1]["ReservedConcurrentExecutions"] == 3
    resize = prod.function("prod_resize")[1]
    assert (resize["MemorySize"], resize["Timeout"]) == (1024, 240)


def _invoke_configs(synth: Synth) -> dict[str, dict]:
    """EventInvokeConfig properties by the function they configure (function name or imported ARN)."""
    names = {
        logical_id: f["Properties"]["FunctionName"] for logical_id, f in synth.of_type("AWS::Lambda::Function").items()
    }
    result = {}
    for config in synth.of_type("AWS::Lambda::EventInvokeConfig").values():
        target = config["Properties"]["FunctionName"]
        key = names[target["Ref"]] if isinstance(target, dict) and "Ref" in target else target
        result[key if isinstance(key, str) else "formatted"] = config["Properties"]
    return result


def test_scheduled_runs_are_not_retried_by_lambda_and_failures_land_in_the_queue(dev: Synth):
    queue = {"Fn::GetAtt": [dev.logical_id("AWS::SQS::Queue"), "Arn"]}
    configs = _invoke_configs(dev)
    for role, retries, age in (
        ("orchestrator", 0, 60),
        ("scavenger", 0, 60),
        ("worker_assistant", 2, 21600),
        ("failure_handler", 2, 21600),
    ):
        assert configs[f"dev_sosw_{role}"] == {
            "FunctionName": {"Ref": dev.function(f"dev_sosw_{role}")[0]},
            "Qualifier": "$LATEST",
            "MaximumRetryAttempts": retries,
            "MaximumEventAgeInSeconds": age,
            "DestinationConfig": {"OnFailure": {"Destination": queue}},
        }, role


def test_workers_are_never_retried_by_lambda_expire_within_their_cooldown_and_fail_to_the_handler(prod: Synth):
    handler = prod.function_arn("prod_sosw_failure_handler")
    configs = _invoke_configs(prod)
    # Given the cooldowns 30 s (below Lambda's 60 s minimum), 600 s, and 90000 s (above its 6 h maximum)
    expected_age = {"prod_example_worker": 60, "prod_resize": 600, "formatted": 21600}
    for name, age in expected_age.items():
        config = configs[name]
        assert config["MaximumRetryAttempts"] == 0
        assert config["MaximumEventAgeInSeconds"] == age
        assert config["DestinationConfig"] == {"OnFailure": {"Destination": handler}}
        assert config["Qualifier"] == "$LATEST"
    # An imported alias: the config is set on that alias of that function
    legacy = configs[LEGACY_ARN.rsplit(":", 1)[0]]
    assert legacy["Qualifier"] == "live" and legacy["MaximumRetryAttempts"] == 0
    assert legacy["MaximumEventAgeInSeconds"] == 300  # the default cooldown


def test_the_worker_async_config_waits_for_the_grant_lambda_checks(dev: Synth):
    worker = {"Ref": dev.function("dev_example_worker")[0]}
    (config_id,) = [
        k for k, c in dev.of_type("AWS::Lambda::EventInvokeConfig").items() if c["Properties"]["FunctionName"] == worker
    ]
    # Lambda refuses an on-failure destination the function's role may not invoke: the policy comes first
    assert any(
        d.startswith("WorkersWorkerexampleworkerRoleDefaultPolicy") for d in dev.resources[config_id]["DependsOn"]
    )


def test_the_ssm_config_is_what_the_task_manager_needs(dev: Synth):
    # Given the parameter's JSON
    config = parameter_config(dev)
    # Then the runtime accepts it and sees the configured labourer, invoked by its function name
    TaskManager(build_config(config))
    labourer = TaskManager(config).get_labourer("example_worker")
    assert labourer.arn == "dev_example_worker"
    assert labourer.max_simultaneous_invocations == 5 and labourer.retry_policy == "exponential"
    (parameter,) = dev.of_type("AWS::SSM::Parameter").values()
    assert parameter["Properties"]["Name"] == "/sosw/dev/config"
    assert parameter["Properties"]["Tier"] == "Standard"


def test_every_environment_fits_lambdas_cap(dev: Synth, prod: Synth):
    for synth in (dev, prod):
        for function in synth.of_type("AWS::Lambda::Function").values():
            variables = function["Properties"]["Environment"]["Variables"]
            size = sum(len(k) + (TOKEN_SIZE_BOUND if isinstance(v, dict) else len(v)) for k, v in variables.items())
            assert size < ENVIRONMENT_LIMIT_BYTES


def test_an_environment_over_4kb_fails_synth_naming_the_function():
    with pytest.raises(ConfigError, match=r"function 'big'.*over Lambda's 4096-byte limit.*'PAYLOAD'"):
        SoswFunction._check_environment("big", {"SMALL": "x", "PAYLOAD": "y" * 4096})
    assert environment_size({"A": "bc"}) == 3


def test_a_worker_environment_over_4kb_fails_the_whole_synth(tmp_path):
    from tests.infra.conftest import synthesize

    context = cdk_context(workers={"big": {"timeout": 60, "duration": 60, "environment": {"BLOB": "z" * 5000}}})
    with pytest.raises(ConfigError, match="function 'dev_big'"):
        synthesize(tmp_path, context)


def _config_with_labourers(count: int, metrics: int) -> StackConfig:
    health = {
        f"m{i}": {
            "details": {"Namespace": "AWS/Lambda", "MetricName": "Errors", "Dimensions": []},
            "feelings": {"3": 1},
        }
        for i in range(metrics)
    }
    workers = {f"w{i}": {"timeout": 60, "duration": 60, "health_metrics": health} for i in range(count)}
    return StackConfig.from_dict({**cdk_context()["sosw"], "workers": workers})


def test_a_big_config_moves_to_the_advanced_tier_and_a_too_big_one_fails_synth():
    stack = Stack(App())
    parameter = ConfigParameter(stack, "Mid", config=_config_with_labourers(9, 4))
    assert 4096 < len(parameter.value) <= 8192
    assert stack.resolve(parameter.parameter.node.default_child.tier) == "Advanced"
    with pytest.raises(ConfigError, match=r"over SSM's 8192-byte limit"):
        ConfigParameter(Stack(App()), "Big", config=_config_with_labourers(20, 4))
