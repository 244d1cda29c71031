"""The DynamoDB tables, built from the one schema definition (``sosw.schema.table_schemas``).

Keys, indexes and TTL attributes come from the schema the TaskManager and its tests use, so the
deployed tables can't drift from the code. Names come from the TaskManager config (the stage's
prefix + sosw's names), and a table listed in ``tables.adopt`` is not created: the stack uses the
existing one by name, so a sosw user keeps their data.
"""

from __future__ import annotations

import sys

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.config import StackConfig
from sosw.schema import KeyAttribute, TableSchema, table_schemas

__all__ = ["DISPATCH_STREAMS", "SoswTables"]

#: The tables whose new rows wake dispatch: new tasks, and tasks put to wait (a retry, a delayed task).
DISPATCH_STREAMS = ("tasks", "retry")

_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER, "B": dynamodb.AttributeType.BINARY}


def _attribute(key: KeyAttribute) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=key.name, type=_TYPES[key.type])


class SoswTables(Construct):
    """The tables by role (tasks, retry, closed, meta, leases), and the ARNs grants need."""

    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.schemas: dict[str, TableSchema] = table_schemas(config.task_manager_config())
        self.key = self._build_key()
        self.tables: dict[str, dynamodb.ITable] = {
            role: self._adopt_table(schema) if role in config.tables.adopt else self._build_table(schema)
            for role, schema in self.schemas.items()
        }

    # ------------------------------------------------------------------ ARNs for grants

    def created(self, role: str) -> dynamodb.Table | None:
        """The table of this role when the stack created it (with its stream, if any); None when adopted."""
        table = self.tables[role]
        return table if isinstance(table, dynamodb.Table) else None

    def table_arn(self, role: str) -> str:
        return self.tables[role].table_arn

    def index_arn(self, role: str) -> str:
        """The ARN of the table's one index (every sosw table with an index has exactly one)."""
        (index,) = self.schemas[role].indexes
        return f"{self.tables[role].table_arn}/index/{index.name}"

    # ------------------------------------------------------------------ building

    def _build_key(self) -> kms.IKey | None:
        settings = self.config.tables
        if settings.encryption != "customer_managed":
            return None
        if settings.kms_key_arn:
            return kms.Key.from_key_arn(self, "Key", settings.kms_key_arn)
        return kms.Key(
            self,
            "Key",
            description=f"sosw {self.config.stage}: encrypts the task tables",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN if self.config.production else RemovalPolicy.DESTROY,
        )

    def _build_table(self, schema: TableSchema) -> dynamodb.Table:
        settings = self.config.tables
        provisioned = settings.billing == "provisioned"
        capacity = {"read_capacity": settings.read_capacity, "write_capacity": settings.write_capacity}
        table = dynamodb.Table(
            self,
            schema.role.capitalize(),
            table_name=schema.name,
            partition_key=_attribute(schema.hash_key),
            sort_key=_attribute(schema.range_key) if schema.range_key else None,
            billing_mode=dynamodb.BillingMode.PROVISIONED if provisioned else dynamodb.BillingMode.PAY_PER_REQUEST,
            **(capacity if provisioned else {}),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=(
                dynamodb.TableEncryption.CUSTOMER_MANAGED if self.key else dynamodb.TableEncryption.AWS_MANAGED
            ),
            encryption_key=self.key,
            time_to_live_attribute=schema.ttl_attribute,
            # New tasks, and tasks put to wait for a retry or a delay, wake dispatch (infra/dispatch.py): the
            # stream carries each new row's labourer.
            stream=dynamodb.StreamViewType.NEW_IMAGE if schema.role in DISPATCH_STREAMS else None,
            deletion_protection=self.config.production,
            removal_policy=RemovalPolicy.RETAIN if self.config.production else RemovalPolicy.DESTROY,
        )
        for index in schema.indexes:
            if index.local:
                table.add_local_secondary_index(
                    index_name=index.name,
                    sort_key=_attribute(index.range_key),  # type: ignore[arg-type]  # an LSI always has one
                    projection_type=dynamodb.ProjectionType.ALL,
                )
            else:
                table.add_global_secondary_index(
                    index_name=index.name,
                    partition_key=_attribute(index.hash_key),
                    sort_key=_attribute(index.range_key) if index.range_key else None,
                    projection_type=dynamodb.ProjectionType.ALL,
                    **(capacity if provisioned else {}),
                )
        return table

    def _adopt_table(self, schema: TableSchema) -> dynamodb.ITable:
        print(
            f"note: using the existing table {schema.name!r} ({schema.role}); the stack does not manage its "
            f"billing, backups, encryption or TTL",
            file=sys.stderr,
        )
        return dynamodb.Table.from_table_attributes(
            self,
            schema.role.capitalize(),
            table_name=schema.name,
            encryption_key=self.key,
            global_indexes=[i.name for i in schema.indexes if not i.local] or None,
            local_indexes=[i.name for i in schema.indexes if i.local] or None,
        )
