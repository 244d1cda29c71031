"""Create the project's tables from the one schema definition (for tests and the local run)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sosw.schema import table_schemas


def create_tables(
    client: Any, custom_config: Mapping[str, Any] | None = None, *, sosw_definitions: bool = False
) -> list[str]:
    """Create the tables named by ``custom_config`` and wait until they are active.

    ``sosw_definitions=True``: the tasks, retry and closed tables as sosw creates them (``sosw.schema``).
    """
    names = []
    for schema in table_schemas(custom_config, sosw_definitions=sosw_definitions).values():
        client.create_table(**schema.create_table_kwargs())
        names.append(schema.name)
    waiter = client.get_waiter("table_exists")
    for name in names:
        waiter.wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    return names


def prefixed_config(prefix: str, custom_config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A config whose table names carry ``prefix`` (so stages, or tests, can share one DynamoDB)."""
    config = {k: v for k, v in (custom_config or {}).items()}
    dynamo = dict(config.get("dynamo_db_config", {}))
    dynamo["table_name"] = f"{prefix}sosw_tasks"
    config["dynamo_db_config"] = dynamo
    config["sosw_retry_tasks_table"] = f"{prefix}sosw_retry_tasks"
    config["sosw_closed_tasks_table"] = f"{prefix}sosw_closed_tasks"
    config["sosw_tasks_meta_table"] = f"{prefix}sosw_tasks_meta"
    config["sosw_orchestrator_leases_table"] = f"{prefix}sosw_orchestrator_leases"
    config["sosw_jobs_table"] = f"{prefix}sosw_jobs"
    return config
