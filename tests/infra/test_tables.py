"""The tables: exactly the schema the TaskManager uses, with the data-safety settings of each stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from sosw.schema import table_schemas
from tests.infra.conftest import Synth, cdk_context, parameter_config, synthesize

ROLES = ("tasks", "retry", "closed", "meta", "leases", "jobs")


def _without_capacity(indexes: list[dict]) -> list[dict]:
    return [{k: v for k, v in index.items() if k != "ProvisionedThroughput"} for index in indexes]


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_every_table_has_the_keys_and_indexes_of_the_shared_schema(stage: str, request: pytest.FixtureRequest):
    # Given the stack and the one schema definition, fed the same TaskManager config
    synth: Synth = request.getfixturevalue(stage)
    schemas = table_schemas(synth.config.task_manager_config())
    assert set(schemas) == set(ROLES)
    for schema in schemas.values():
        # When the table's synthesized properties are read
        _, table = synth.table(schema.name)
        props = table["Properties"]
        expected = schema.create_table_kwargs()
        # Then keys, attribute types and indexes are the schema's, attribute for attribute
        assert props["KeySchema"] == expected["KeySchema"], schema.role
        assert sorted(props["AttributeDefinitions"], key=str) == sorted(expected["AttributeDefinitions"], key=str)
        assert _without_capacity(props.get("GlobalSecondaryIndexes", [])) == expected.get("GlobalSecondaryIndexes", [])
        assert props.get("LocalSecondaryIndexes", []) == expected.get("LocalSecondaryIndexes", [])
        # And the TTL attribute is the one the TaskManager writes, on closed tasks and history only
        if schema.ttl_attribute:
            assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
        else:
            assert "TimeToLiveSpecification" not in props


def test_the_runtime_config_names_exactly_the_tables_the_stack_creates(dev: Synth):
    # Given the config the Lambdas read from SSM
    runtime = parameter_config(dev)
    # When the TaskManager derives its tables from it
    names = {s.name for s in table_schemas(runtime).values()}
    # Then they are the tables of the template, with the stage's prefix
    created = {t["Properties"]["TableName"] for t in dev.of_type("AWS::DynamoDB::Table").values()}
    assert names == created
    assert created == {
        f"dev_{n}"
        for n in (
            "sosw_tasks",
            "sosw_retry_tasks",
            "sosw_closed_tasks",
            "sosw_tasks_meta",
            "sosw_orchestrator_leases",
            "sosw_jobs",
        )
    }


def test_dev_tables_are_on_demand_recoverable_encrypted_and_disposable(dev: Synth):
    for table in dev.of_type("AWS::DynamoDB::Table").values():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert props["SSESpecification"]["SSEEnabled"] is True
        assert "KMSMasterKeyId" not in props["SSESpecification"]  # the AWS-managed key
        assert props.get("DeletionProtectionEnabled", False) is False
        assert table["DeletionPolicy"] == "Delete"


def test_prod_tables_are_protected_retained_provisioned_and_use_the_stack_key(prod: Synth):
    key = None  # the tables' key (prod has a second one, for the topics)
    for table in prod.of_type("AWS::DynamoDB::Table").values():
        props = table["Properties"]
        assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"
        assert props["DeletionProtectionEnabled"] is True
        assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
        assert "BillingMode" not in props or props["BillingMode"] == "PROVISIONED"
        assert props["ProvisionedThroughput"] == {"ReadCapacityUnits": 7, "WriteCapacityUnits": 3}
        for index in props.get("GlobalSecondaryIndexes", []):
            assert index["ProvisionedThroughput"] == {"ReadCapacityUnits": 7, "WriteCapacityUnits": 3}
        assert props["SSESpecification"]["SSEType"] == "KMS"
        key = key or props["SSESpecification"]["KMSMasterKeyId"]
        assert props["SSESpecification"]["KMSMasterKeyId"] == key  # one key for all tables
    key_id = key["Fn::GetAtt"][0]
    assert prod.resources[key_id]["Properties"]["EnableKeyRotation"] is True
    assert prod.resources[key_id]["DeletionPolicy"] == "Retain"


def test_only_the_production_stack_is_protected_from_deletion(dev: Synth, prod: Synth):
    assert prod.stack.termination_protection is True
    assert dev.stack.termination_protection is False


def test_closed_task_retention_reaches_the_runtime_config(dev: Synth, prod: Synth):
    assert parameter_config(dev)["closed_task_ttl_seconds"] == 90 * 86400
    assert parameter_config(prod)["closed_task_ttl_seconds"] == 30 * 86400


def test_two_stages_share_no_table_function_parameter_or_log_group_name(dev: Synth, prod: Synth):
    def names(synth: Synth) -> set[str]:
        found = set()
        for type_, key in (
            ("AWS::DynamoDB::Table", "TableName"),
            ("AWS::Lambda::Function", "FunctionName"),
            ("AWS::SSM::Parameter", "Name"),
            ("AWS::Logs::LogGroup", "LogGroupName"),
            ("AWS::CloudWatch::Alarm", "AlarmName"),
            ("AWS::CloudWatch::Dashboard", "DashboardName"),
        ):
            found |= {r["Properties"][key] for r in synth.of_type(type_).values()}
        return found

    assert names(dev) and names(prod)
    assert not names(dev) & names(prod)
    assert dev.stack.stack_name != prod.stack.stack_name


@pytest.fixture(scope="module")
def adopted(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """A sosw user's switch: no prefix, their three tables used by name."""
    context = cdk_context(prefix="", tables={"adopt": ["tasks", "retry", "closed"]})
    return synthesize(Path(tmp_path_factory.mktemp("adopted")), context)


def test_adopted_tables_are_not_created_and_the_others_are(adopted: Synth):
    created = {t["Properties"]["TableName"] for t in adopted.of_type("AWS::DynamoDB::Table").values()}
    assert created == {"sosw_tasks_meta", "sosw_orchestrator_leases", "sosw_jobs"}
    assert "sosw_tasks" in adopted.stderr and "does not manage" in adopted.stderr


def test_grants_on_adopted_tables_name_them_and_their_indexes_exactly(adopted: Synth):
    # Given the Orchestrator's statement on open tasks
    statement = adopted.statements_by_sid("sosw_orchestrator")["OpenTasks"]
    table, index = statement["Resource"]
    # Then it names the existing table and its greenfield index, in the stack's own account and region
    assert table["Fn::Join"][1][-1] == ":table/sosw_tasks"
    assert {"Ref": "AWS::AccountId"} in table["Fn::Join"][1] and {"Ref": "AWS::Region"} in table["Fn::Join"][1]
    assert index["Fn::Join"][1][-1] == ":table/sosw_tasks/index/sosw_tasks_greenfield"
    retry = adopted.statements_by_sid("sosw_scavenger")["RetryTasks"]["Resource"]
    assert [r["Fn::Join"][1][-1] for r in retry] == [
        ":table/sosw_retry_tasks",
        ":table/sosw_retry_tasks/index/labourer_id_greenfield",
    ]


def test_a_sosw_switch_keeps_the_assistant_name_sosw_workers_call(adopted: Synth):
    adopted.function("sosw_worker_assistant")
    assert parameter_config(adopted)["dynamo_db_config"]["table_name"] == "sosw_tasks"
