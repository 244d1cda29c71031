"""What every lifecycle step shares: config, clock, clients, table and field names, labourers.

One ``TaskContext`` per TaskManager. The step modules (queue, creation, claims, reports, moves, dead)
read and write the tables through it, so a client replaced on the facade (``manager.lambda_client =
...``) is the one every step uses from then on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from boto3.dynamodb.conditions import Attr, ConditionBase
from botocore.exceptions import ClientError

from sosw import aws
from sosw.clock import Clock
from sosw.dynamo import Expressions, call_with_retries, deserialize_item, error_code, serialize_item
from sosw.errors import InvalidInputError, UnknownLabourerError
from sosw.labourer import Labourer
from sosw.schema import table_schemas

__all__ = ["CloseHook", "TaskContext"]


class CloseHook(Protocol):
    """Extra items for the one transaction that closes a task (or reopens one: a redrive).

    ``row`` is the task as it is being closed (or as it was closed, when reopened), ``outcome`` one of
    ``CLOSE_OUTCOMES`` (``completed``, ``dead``, ``cancelled``) and ``delta`` +1 for a close, -1 for a reopen.
    It returns TransactWriteItems entries (low-level client format), usually none: whatever a close must
    change elsewhere (a job's counters) changes in the same request, so it can't be lost or counted twice.
    """

    def __call__(self, row: Mapping[str, Any], outcome: str, delta: int) -> list[dict[str, Any]]: ...


class TaskContext:
    """The TaskManager's state and its store primitives, without any lifecycle step."""

    def __init__(self, config: dict[str, Any], clock: Clock, *, dynamodb_client: Any = None, lambda_client: Any = None):
        self.config = config
        self.clock = clock
        self._dynamodb = dynamodb_client
        self._lambda = lambda_client
        self.stats: Counter[str] = Counter()
        self._tables = table_schemas(config)
        self._labourers: list[Labourer] | None = None
        #: The caller's time left (a Lambda's ``get_remaining_time_in_millis() / 1000``): retries of what DynamoDB
        #: refuses under load stop before it runs out (see :func:`sosw.dynamo.call_with_retries`).
        self.remaining: Callable[[], float] | None = None
        #: No leases table to keep slot counters in (sosw's own tables without the stack): see tasks.slots.
        self.counters_missing = False
        #: Registered by capabilities beside the steps (sosw.jobs): see :class:`CloseHook`.
        self.close_hooks: list[CloseHook] = []
        #: Fields a worker's copy of its task must hold exactly as the stored task does for the copy to close
        #: it (a hook reads them from the copy): a copy that differs falls back to the report-then-archive path.
        self.close_guard_fields: set[str] = set()

    # ------------------------------------------------------------------ clients, tables, fields

    @property
    def dynamodb(self) -> Any:
        if self._dynamodb is None:
            self._dynamodb = aws.dynamodb_client()
        return self._dynamodb

    @dynamodb.setter
    def dynamodb(self, client: Any) -> None:
        self._dynamodb = client

    @property
    def lambda_client(self) -> Any:
        if self._lambda is None:
            self._lambda = aws.lambda_client()
        return self._lambda

    @lambda_client.setter
    def lambda_client(self, client: Any) -> None:
        self._lambda = client

    @property
    def tasks_table(self) -> str:
        return self._tables["tasks"].name

    @property
    def retry_table(self) -> str:
        return self._tables["retry"].name

    @property
    def closed_table(self) -> str:
        return self._tables["closed"].name

    @property
    def leases_table(self) -> str:
        return self._tables["leases"].name

    def field(self, key: str) -> str:
        """The attribute name of a task field (``dynamo_db_config.field_names`` may rename them)."""
        return self.config["dynamo_db_config"]["field_names"].get(key, key)

    def now(self) -> int:
        return int(self.clock.now())

    def retry_settings(self) -> dict[str, Any]:
        return {
            "attempts": self.config["write_retry_attempts"],
            "base": self.config["write_retry_base_seconds"],
            "cap": self.config["write_retry_cap_seconds"],
            "remaining": self.remaining,
        }

    # ------------------------------------------------------------------ labourers and run windows

    def get_labourers(self) -> list[Labourer]:
        if self._labourers is None:
            labourers = []
            for name, settings in self.config["labourers"].items():
                labourer = Labourer.from_config(name, settings)
                if labourer.max_simultaneous_invocations is None:
                    labourer.max_simultaneous_invocations = self.config["max_simultaneous_invocations"]
                if not labourer.has_attr("max_attempts"):
                    labourer.set_custom_attribute(
                        "max_attempts", self.config.get(f"max_attempts_{name}") or self.config["max_attempts"]
                    )
                labourers.append(labourer)
            self._labourers = labourers
        return self._labourers

    def get_labourer(self, labourer_id: str) -> Labourer:
        for labourer in self.get_labourers():
            if labourer.id == labourer_id:
                return labourer
        raise UnknownLabourerError(labourer_id, [lab.id for lab in self.get_labourers()])

    def check_labourer(self, labourer: Any) -> Labourer:
        if not isinstance(labourer, Labourer):
            raise InvalidInputError("labourer", f"expected a Labourer, got {type(labourer).__name__}")
        self.get_labourer(labourer.id)  # raises UnknownLabourerError
        return labourer

    def open_run_window(self) -> list[Labourer]:
        start = self.now()
        delta = self.config["greenfield_invocation_delta"]
        for labourer in self.get_labourers():
            labourer.set_custom_attribute("start", start)
            labourer.set_custom_attribute("invoked", start + delta)
            labourer.set_custom_attribute("expired", start + delta - int(labourer.duration + labourer.cooldown))
        return self.get_labourers()

    def windows(self, labourer: Labourer) -> tuple[int, int, int]:
        """(start, invoked, expired) of the current run: registered values, else computed from now."""
        self.check_labourer(labourer)
        if labourer.has_attr("start"):
            return labourer.get_attr("start"), labourer.get_attr("invoked"), labourer.get_attr("expired")
        start = self.now()
        invoked = start + self.config["greenfield_invocation_delta"]
        return start, invoked, invoked - int(labourer.duration + labourer.cooldown)

    def close_items(self, row: Mapping[str, Any], outcome: str, delta: int = 1) -> list[dict[str, Any]]:
        """Every hook's extra items for the transaction that closes (``delta=-1``: reopens) ``row``."""
        return [item for hook in self.close_hooks for item in hook(row, outcome, delta)]

    # ------------------------------------------------------------------ conditions and store primitives

    def open_condition(self) -> ConditionBase:
        """Invoked and not yet reported: neither completed nor failed."""
        _ = self.field
        return Attr(_("completed_at")).not_exists() & Attr(_("failed_at")).not_exists()

    def version_condition(self, task: Mapping[str, Any]) -> ConditionBase:
        """The task is exactly as read: same greenfield and same attempt (so a stale move is a no-op)."""
        _ = self.field
        condition = Attr(_("task_id")).exists() & Attr(_("greenfield")).eq(task[_("greenfield")])
        if _("attempts") in task:
            return condition & Attr(_("attempts")).eq(task[_("attempts")])
        return condition & Attr(_("attempts")).not_exists()

    def require(self, task: Any, *keys: str) -> None:
        """A task dict handed back by a caller must carry what the move is conditioned on."""
        if not isinstance(task, Mapping):
            raise InvalidInputError("task", f"expected a task dict, got {type(task).__name__}")
        for key in keys:
            if task.get(self.field(key)) is None:
                raise InvalidInputError(self.field(key), "missing from the task dict")

    def get_item(self, table: str, key: Mapping[str, Any]) -> dict[str, Any]:
        """A strongly consistent read of one item; ``{}`` if there is none."""
        response = call_with_retries(
            lambda: self.dynamodb.get_item(TableName=table, Key=serialize_item(key), ConsistentRead=True),
            **self.retry_settings(),
        )
        return deserialize_item(response["Item"]) if "Item" in response else {}

    def update_open_task(
        self, task_id: str, update: str, condition: ConditionBase, ex: Expressions, *, return_new: bool = True
    ) -> tuple[bool, dict[str, Any]]:
        """A conditional UpdateItem of one task: ``(True, the item after)``, or ``(False, the item as it was)``
        (``{}`` if there is none) when the condition fails: a refusal is an answer here, not an exception.

        The claim, the start guard and the reports all work so: the old item, returned by the same
        request, tells our own call retried by botocore (same token) from someone else's change.
        """
        request = {
            "TableName": self.tasks_table,
            "Key": serialize_item({self.field("task_id"): task_id}),
            "UpdateExpression": update,
            "ConditionExpression": ex.condition(condition),
            "ReturnValues": "ALL_NEW" if return_new else "NONE",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            **ex.params(),
        }
        try:
            # A plain write to a task that a transaction holds fails with TransactionConflictException, which
            # botocore does not retry: nothing was written, so it is sent again.
            response = call_with_retries(lambda: self.dynamodb.update_item(**request), **self.retry_settings())
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                raise
            return False, deserialize_item(exc.response["Item"]) if exc.response.get("Item") else {}
        return True, deserialize_item(response.get("Attributes") or {})
