"""Labourer settings and the TaskManager config: clear errors that name the key."""

from __future__ import annotations

import pytest

from sosw.config import build_config
from sosw.errors import ConfigError
from sosw.labourer import Labourer
from sosw.schema import table_schemas
from tests.dropin.differences import declared


def test_labourer_defaults_follow_domain_settings():
    lab = Labourer(id="resize")
    assert (lab.arn, lab.duration, lab.cooldown, lab.retry_policy) == ("resize", 900, 300, "linear")
    assert (lab.retry_base, lab.retry_cap, lab.never_retry_errors) == (60, 3600, ())
    assert lab.max_invocations_per_minute is None and lab.health_metrics == {}


def test_registered_attributes_fail_loudly_before_registration():
    lab = Labourer(id="resize")
    with pytest.raises(AttributeError, match="register_labourers"):
        _ = lab.start
    lab.set_custom_attribute("start", 5)
    assert lab.start == 5 and lab.get_attr("start") == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": "bad name"}, "labourer id"),
        ({"id": "a", "arn": "arn:aws:s3:::bucket"}, "a.arn"),
        ({"id": "a", "arn": "not a function!"}, "a.arn"),
        ({"id": "a", "max_attempts": 0}, "a.max_attempts"),
        ({"id": "a", "max_simultaneous_invocations": -1}, "a.max_simultaneous_invocations"),
        ({"id": "a", "max_invocations_per_minute": 0}, "a.max_invocations_per_minute"),
        ({"id": "a", "duration": 0}, "a.duration"),
        ({"id": "a", "cooldown": -5}, "a.cooldown"),
        ({"id": "a", "retry_policy": "random"}, "a.retry_policy"),
        ({"id": "a", "retry_base": 100, "retry_cap": 10}, "a.retry_cap"),
        ({"id": "a", "never_retry_errors": "ValueError"}, "a.never_retry_errors"),
        ({"id": "a", "duration": "900"}, "a.duration"),
    ],
)
def test_bad_labourer_settings_name_the_key(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Labourer(**kwargs)


def test_a_typo_in_a_configured_labourer_is_refused_naming_it():
    with pytest.raises(ConfigError, match=r"unknown setting.*max_atempts"):
        Labourer.from_config("a", {"max_atempts": 3})
    # and every setting of DOMAIN.md is taken (sosw refuses duration, cooldown, ... at registration)
    taken = Labourer.from_config("a", {"duration": 30, "cooldown": 5, "retry_policy": "exponential"})
    assert (taken.duration, taken.cooldown, taken.retry_policy) == (30, 5, "exponential"), declared(
        "labourer-settings-strict"
    )


def test_full_lambda_arn_is_accepted():
    arn = "arn:aws:lambda:eu-west-1:123456789012:function:resize:live"
    assert Labourer(id="resize", arn=arn).arn == arn


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"greenfield_task_step": 0}, "greenfield_task_step"),
        ({"max_attempts": "3"}, "max_attempts"),
        ({"labourers": ["a"]}, "labourers"),
        ({"task_item_headroom_bytes": 500 * 1024}, "task_item_headroom_bytes"),
        ({"closed_task_ttl_seconds": -1}, "closed_task_ttl_seconds"),
    ],
)
def test_bad_config_names_the_key(config, message):
    with pytest.raises(ConfigError, match=message):
        build_config(config)


def test_custom_config_merges_nested_keys():
    config = build_config({"dynamo_db_config": {"table_name": "mine"}})
    assert config["dynamo_db_config"]["table_name"] == "mine"
    assert config["dynamo_db_config"]["index_greenfield"] == "sosw_tasks_greenfield"


def test_schema_matches_sosw_tables():
    tables = table_schemas()
    tasks, retry, closed, meta = tables["tasks"], tables["retry"], tables["closed"], tables["meta"]
    assert (tasks.name, tasks.hash_key.name, tasks.range_key) == ("sosw_tasks", "task_id", None)
    [gsi] = tasks.indexes
    assert (gsi.name, gsi.hash_key.name, gsi.range_key.name, gsi.range_key.type) == (
        "sosw_tasks_greenfield",
        "labourer_id",
        "greenfield",
        "N",
    )
    assert (retry.hash_key.name, retry.range_key.name) == ("labourer_id", "task_id")
    [lsi] = retry.indexes
    assert (lsi.name, lsi.local, lsi.range_key.name) == ("labourer_id_greenfield", True, "desired_launch_time")
    [status] = closed.indexes
    assert (status.name, status.hash_key.name, status.range_key.name) == (
        "labourer_task_status_with_time",
        "labourer_id_task_status",
        "closed_at",
    )
    assert (meta.hash_key.name, meta.range_key.name) == ("task_id", "created_at")


def test_schema_follows_renamed_fields():
    tables = table_schemas({"dynamo_db_config": {"field_names": {"task_id": "id"}}})
    assert tables["tasks"].hash_key.name == "id" and tables["retry"].range_key.name == "id"
