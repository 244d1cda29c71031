"""The one definition of the tables' keys and indexes.

The tests create their tables from it, the CDK stack builds its tables from it, and an
infrastructure test checks the synthesized template against it, so code, tests and the
deployed tables can't drift apart. Names follow sosw, so existing sosw tables fit.

``table_schemas(config, sosw_definitions=True)`` gives the tasks, retry and closed tables exactly as
sosw's own CloudFormation template creates them (provisioned capacity, and a closed-tasks index that
projects only ``completed_at``, ``greenfield`` and ``attempts``): the tables a sosw user adopts. The
adopted-table tests and the differential suite against sosw create their tables from it, so the code
is tested on what sosw users really have, not only on the richer tables this stack creates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sosw.config import build_config


@dataclass(frozen=True)
class KeyAttribute:
    name: str
    type: str  # "S" or "N"


@dataclass(frozen=True)
class IndexSchema:
    name: str
    hash_key: KeyAttribute
    range_key: KeyAttribute | None
    local: bool = False  # an LSI shares the table's hash key
    #: None: every attribute (ALL); else only these besides the keys (INCLUDE), as sosw's closed-tasks index
    include: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TableSchema:
    role: str  # tasks | retry | closed | meta | leases | jobs: what the table is for, whatever its name
    name: str
    hash_key: KeyAttribute
    range_key: KeyAttribute | None = None
    indexes: tuple[IndexSchema, ...] = field(default_factory=tuple)
    ttl_attribute: str | None = None
    #: (read, write) units of the table and of each global index; None: on-demand
    capacity: tuple[int, int] | None = None

    def attribute_definitions(self) -> list[dict[str, str]]:
        attrs: dict[str, str] = {}
        for attr in (self.hash_key, self.range_key):
            if attr:
                attrs[attr.name] = attr.type
        for index in self.indexes:
            for attr in (index.hash_key, index.range_key):
                if attr:
                    attrs[attr.name] = attr.type
        return [{"AttributeName": n, "AttributeType": t} for n, t in attrs.items()]

    def create_table_kwargs(self) -> dict[str, Any]:
        """Arguments for ``CreateTable`` (on-demand, or provisioned with ``capacity``), as a local or test
        environment needs them."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeySchema": _key_schema(self.hash_key, self.range_key),
            "AttributeDefinitions": self.attribute_definitions(),
        }
        throughput = None
        if self.capacity:
            throughput = {"ReadCapacityUnits": self.capacity[0], "WriteCapacityUnits": self.capacity[1]}
            kwargs["ProvisionedThroughput"] = throughput
        else:
            kwargs["BillingMode"] = "PAY_PER_REQUEST"
        gsis = [i for i in self.indexes if not i.local]
        lsis = [i for i in self.indexes if i.local]
        if gsis:
            kwargs["GlobalSecondaryIndexes"] = [
                {**_index(i), **({"ProvisionedThroughput": dict(throughput)} if throughput else {})} for i in gsis
            ]
        if lsis:
            kwargs["LocalSecondaryIndexes"] = [_index(i) for i in lsis]
        return kwargs


def _key_schema(hash_key: KeyAttribute, range_key: KeyAttribute | None) -> list[dict[str, str]]:
    keys = [{"AttributeName": hash_key.name, "KeyType": "HASH"}]
    if range_key:
        keys.append({"AttributeName": range_key.name, "KeyType": "RANGE"})
    return keys


def _index(index: IndexSchema) -> dict[str, Any]:
    projection: dict[str, Any] = {"ProjectionType": "ALL"}
    if index.include is not None:
        projection = {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(index.include)}
    return {
        "IndexName": index.name,
        "KeySchema": _key_schema(index.hash_key, index.range_key),
        "Projection": projection,
    }


TTL_ATTRIBUTE = "ttl"
#: What sosw's CloudFormation template gives each of its tables and global indexes (read, write).
SOSW_CAPACITY = (5, 5)
#: The only non-key attributes sosw's closed-tasks index projects.
SOSW_CLOSED_INDEX_INCLUDE = ("completed_at", "greenfield", "attempts")


def table_schemas(
    custom_config: Mapping[str, Any] | None = None, *, sosw_definitions: bool = False
) -> dict[str, TableSchema]:
    """The tables for a TaskManager config (names and field renames taken from it).

    ``sosw_definitions=True``: the tasks, retry and closed tables as sosw's CloudFormation template
    defines them (see the module's docstring); the meta and leases tables stay this stack's.
    """
    config = build_config(custom_config)
    names = config["dynamo_db_config"]["field_names"]

    def f(key: str, type_: str) -> KeyAttribute:
        return KeyAttribute(names.get(key, key), type_)

    task_id, labourer_id = f("task_id", "S"), f("labourer_id", "S")
    tasks = TableSchema(
        role="tasks",
        name=config["dynamo_db_config"]["table_name"],
        hash_key=task_id,
        indexes=(IndexSchema(config["dynamo_db_config"]["index_greenfield"], labourer_id, f("greenfield", "N")),),
    )
    retry = TableSchema(
        role="retry",
        name=config["sosw_retry_tasks_table"],
        hash_key=labourer_id,
        range_key=task_id,
        indexes=(
            IndexSchema(
                config["sosw_retry_tasks_greenfield_index"], labourer_id, f("desired_launch_time", "N"), local=True
            ),
        ),
    )
    closed = TableSchema(
        role="closed",
        name=config["sosw_closed_tasks_table"],
        hash_key=task_id,
        indexes=(
            IndexSchema(
                config["sosw_closed_tasks_labourer_status_index"],
                f("labourer_id_task_status", "S"),
                f("closed_at", "N"),
            ),
        ),
        ttl_attribute=TTL_ATTRIBUTE,
    )
    meta = TableSchema(
        role="meta",
        name=config["sosw_tasks_meta_table"],
        hash_key=task_id,
        range_key=f("created_at", "N"),
        ttl_attribute=TTL_ATTRIBUTE,
    )
    leases = TableSchema(
        role="leases",
        name=config["sosw_orchestrator_leases_table"],
        hash_key=labourer_id,
    )
    if sosw_definitions:
        tasks = replace(tasks, capacity=SOSW_CAPACITY)
        retry = replace(retry, capacity=SOSW_CAPACITY)
        (closed_index,) = closed.indexes
        include = tuple(names.get(k, k) for k in SOSW_CLOSED_INDEX_INCLUDE)
        closed = replace(
            closed, capacity=SOSW_CAPACITY, ttl_attribute=None, indexes=(replace(closed_index, include=include),)
        )
    # This project's: one header item per job (its key is the job id) and its counter shards ("<job_id>#<n>").
    # The index holds only the headers (sparse: "open" until the job's end event is published, then "done").
    jobs = TableSchema(
        role="jobs",
        name=config["sosw_jobs_table"],
        hash_key=KeyAttribute("job_id", "S"),
        indexes=(
            IndexSchema(config["sosw_jobs_index"], KeyAttribute("job_list", "S"), KeyAttribute("created_at", "N")),
        ),
    )
    return {t.role: t for t in (tasks, retry, closed, meta, leases, jobs)}
