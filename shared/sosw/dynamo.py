"""Thin helpers over the plain boto3 DynamoDB client.

boto3 does the marshalling (TypeSerializer/TypeDeserializer), the expressions (its condition
builder) and the paging (paginators); this module only puts them together for one request, and
adds what boto3 lacks: backoff for UnprocessedItems and for transaction conflicts, and the reading
of a cancelled transaction's reasons.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from boto3.dynamodb.conditions import ConditionBase, ConditionExpressionBuilder
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

_serializer = TypeSerializer()


class _Deserializer(TypeDeserializer):
    """Numbers come back as int or float, not Decimal: tasks are handed to user code and to JSON."""

    def _deserialize_n(self, value: str) -> int | float:
        number = Decimal(value)
        return int(number) if number == number.to_integral_value() else float(number)


_deserializer = _Deserializer()


def to_dynamo_value(value: Any) -> Any:
    """A Python value made storable: floats become Decimals (what TypeSerializer requires)."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {k: to_dynamo_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_dynamo_value(v) for v in value]
    return value


def json_to_dynamo(value: Any) -> Any:
    """A JSON-compatible value (result, stats) in the types DynamoDB stores; raises TypeError if not JSON."""
    return json.loads(json.dumps(value, allow_nan=False), parse_float=Decimal)


def serialize_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(to_dynamo_value(v)) for k, v in item.items()}


def deserialize_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deserializer.deserialize(v) for k, v in item.items()}


class Expressions:
    """Collects the expressions of one request so that their placeholders never collide.

    >>> ex = Expressions()
    >>> cond = ex.condition(Attr("greenfield").lt(5))
    >>> update = f"SET {ex.name('greenfield')} = {ex.value(7)}"
    >>> request = {"ConditionExpression": cond, "UpdateExpression": update, **ex.params()}
    """

    def __init__(self) -> None:
        self._builder = ConditionExpressionBuilder()
        self._names: dict[str, str] = {}
        self._values: dict[str, Any] = {}
        self._counter = 0

    def _build(self, condition: ConditionBase, is_key: bool) -> str:
        built = self._builder.build_expression(condition, is_key_condition=is_key)
        self._names.update(built.attribute_name_placeholders)
        self._values.update(built.attribute_value_placeholders)
        return built.condition_expression

    def condition(self, condition: ConditionBase) -> str:
        return self._build(condition, is_key=False)

    def key_condition(self, condition: ConditionBase) -> str:
        return self._build(condition, is_key=True)

    def name(self, attribute: str) -> str:
        placeholder = f"#u{len(self._names)}_{self._counter}"
        self._counter += 1
        self._names[placeholder] = attribute
        return placeholder

    def value(self, value: Any) -> str:
        placeholder = f":u{len(self._values)}_{self._counter}"
        self._counter += 1
        self._values[placeholder] = value
        return placeholder

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self._names:
            params["ExpressionAttributeNames"] = dict(self._names)
        if self._values:
            params["ExpressionAttributeValues"] = serialize_item(self._values)
        return params


def _query_request(
    table: str,
    key_condition: ConditionBase,
    index: str | None,
    filter_condition: ConditionBase | None,
    **extra: Any,
) -> dict[str, Any]:
    ex = Expressions()
    kwargs: dict[str, Any] = {"TableName": table, "KeyConditionExpression": ex.key_condition(key_condition), **extra}
    if index:
        kwargs["IndexName"] = index
    if filter_condition is not None:
        kwargs["FilterExpression"] = ex.condition(filter_condition)
    kwargs.update(ex.params())
    return kwargs


def query(
    client: DynamoDBClient,
    *,
    table: str,
    key_condition: ConditionBase,
    index: str | None = None,
    filter_condition: ConditionBase | None = None,
    ascending: bool = True,
    limit: int | None = None,
    consistent: bool = False,
    page_size: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield the items of a Query, page after page, stopping after ``limit`` items.

    ``page_size`` bounds the items each request reads, for a caller that consumes the items lazily.
    """
    kwargs = _query_request(table, key_condition, index, filter_condition, ScanIndexForward=ascending)
    if consistent:
        kwargs["ConsistentRead"] = True
    if page_size is not None:
        kwargs["Limit"] = page_size
    elif limit is not None and filter_condition is None:
        kwargs["Limit"] = limit  # with a filter, Limit counts items read, not returned
    produced = 0
    for page in client.get_paginator("query").paginate(**kwargs):
        for raw in page.get("Items", []):
            yield deserialize_item(raw)
            produced += 1
            if limit is not None and produced >= limit:
                return


def count(
    client: DynamoDBClient,
    *,
    table: str,
    key_condition: ConditionBase,
    index: str | None = None,
    filter_condition: ConditionBase | None = None,
    max_pages: int | None = None,
) -> tuple[int, bool]:
    """Count the items of a Query (``Select=COUNT``); returns (count, complete).

    ``complete`` is False when ``max_pages`` stopped the count early: the count is then a lower bound.
    """
    kwargs = _query_request(table, key_condition, index, filter_condition, Select="COUNT")
    total = 0
    for number, page in enumerate(client.get_paginator("query").paginate(**kwargs), start=1):
        total += page["Count"]
        if max_pages is not None and number >= max_pages and page.get("LastEvaluatedKey"):
            return total, False
    return total, True


def backoff_delays(attempts: int, base: float, cap: float) -> Iterator[float]:
    """Exponential backoff with full jitter: the delays to sleep between ``attempts`` tries."""
    return retry_delays(attempts, base, cap)


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


#: Errors DynamoDB answers under load: nothing was written, and the same request may pass a moment later.
#: botocore retries the throttles itself (a few times); ``TransactionConflictException`` (a plain write to an
#: item that a transaction holds) it does not retry at all. Not a 5xx: a write may have happened then, and
#: botocore's own retries of it are the safe ones (they resend the transaction's idempotency token).
TRANSIENT_ERRORS = frozenset(
    {
        "TransactionConflictException",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
    }
)
#: Cancellation reasons of a transaction that say the same of one of its items.
TRANSIENT_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})

#: A retry never sleeps into the caller's last second: the caller still needs it to give up cleanly.
RETRY_SAFETY_SECONDS = 1.0


class UnprocessedError(RuntimeError):
    """A batch request left items or keys unprocessed (DynamoDB's throttling of a batch) past its retries."""


def is_transient(exc: BaseException) -> bool:
    """A refusal that load explains (a throttle, a conflict), as opposed to one that the request itself caused."""
    if isinstance(exc, UnprocessedError):
        return True
    if not isinstance(exc, ClientError):
        return False
    code = error_code(exc)
    if code == "TransactionCanceledException":
        return bool(_codes(exc) & TRANSIENT_REASONS)
    return code in TRANSIENT_ERRORS


def _codes(exc: ClientError) -> set[str]:
    return {r.get("Code") for r in exc.response.get("CancellationReasons", [])} - {None, "None"}


def retry_delays(
    attempts: int, base: float, cap: float, remaining: Callable[[], float] | None = None
) -> Iterator[float]:
    """The backoff delays between tries: ``attempts`` tries in all, or, given the caller's time left
    (``remaining``, e.g. a Lambda's), as many as fit before its last ``RETRY_SAFETY_SECONDS``."""
    attempt = 0
    while remaining is not None or attempt < attempts - 1:
        delay = random.uniform(0, min(cap, base * 2 ** min(attempt, 30)))
        if remaining is not None and remaining() - delay < RETRY_SAFETY_SECONDS:
            return
        attempt += 1
        yield delay


T = TypeVar("T")


def call_with_retries(
    call: Callable[[], T],
    *,
    attempts: int = 8,
    base: float = 0.05,
    cap: float = 2.0,
    remaining: Callable[[], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``call()``, tried again with backoff while DynamoDB refuses it for load (:func:`is_transient`).

    Only for requests that are safe to send twice: conditional writes whose refusal the caller reads as an
    answer, ADDs in transactions (all or nothing), and reads. The last refusal is raised as it came.
    """
    delays = retry_delays(attempts, base, cap, remaining)
    while True:
        try:
            return call()
        except ClientError as exc:
            if not is_transient(exc):
                raise
            delay = next(delays, None)
            if delay is None:
                raise
            sleep(delay)


class TransactionCancelled(Exception):
    """A transaction was cancelled because a condition failed; nothing was written.

    ``reasons`` holds one entry per item: its ``Code`` (``None`` for the items that passed) and, where
    asked for, the ``Item`` as it was (deserialized).
    """

    def __init__(self, reasons: list[dict[str, Any]]) -> None:
        super().__init__(f"transaction cancelled: {[r.get('Code') for r in reasons]}")
        self.reasons = reasons


def transact_write(
    client: DynamoDBClient,
    items: Sequence[Mapping[str, Any]],
    *,
    attempts: int = 8,
    base: float = 0.05,
    cap: float = 2.0,
    remaining: Callable[[], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Run a TransactWriteItems; raise :class:`TransactionCancelled` if a condition failed.

    A cancellation that load explains (a concurrent transaction on one of the items, a throttled partition)
    is tried again with backoff (see :func:`retry_delays`: ``attempts`` tries, or while the caller's
    ``remaining`` time lasts): nothing was written, and the conditions are evaluated afresh on each try.
    Past that, the last error is raised.
    """
    try:
        call_with_retries(
            lambda: client.transact_write_items(TransactItems=list(items)),
            attempts=attempts,
            base=base,
            cap=cap,
            remaining=remaining,
            sleep=sleep,
        )
    except ClientError as exc:
        if error_code(exc) != "TransactionCanceledException":
            raise
        codes = _codes(exc)
        if codes and codes <= {"ConditionalCheckFailed"}:
            reasons = [_reason(r) for r in exc.response.get("CancellationReasons", [])]
            raise TransactionCancelled(reasons) from exc
        raise


def _reason(raw: Mapping[str, Any]) -> dict[str, Any]:
    reason: dict[str, Any] = {"Code": raw.get("Code"), "Message": raw.get("Message")}
    if raw.get("Item"):
        reason["Item"] = deserialize_item(raw["Item"])
    return reason


#: DynamoDB's limit of put requests in one BatchWriteItem.
BATCH_WRITE_SIZE = 25


def batch_write(
    client: DynamoDBClient,
    table: str,
    items: Iterable[Mapping[str, Any]],
    *,
    attempts: int = 8,
    base: float = 0.05,
    cap: float = 2.0,
    remaining: Callable[[], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Put ``items`` with BatchWriteItem, ``BATCH_WRITE_SIZE`` at a time, in order; returns the number of requests.

    UnprocessedItems are sent again with backoff and full jitter, a bounded number of times (and a request
    refused for load, likewise); if some are still left, the error says how many, and everything before them
    was written.
    """
    retry = {"attempts": attempts, "base": base, "cap": cap, "remaining": remaining, "sleep": sleep}
    requests = 0
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal requests
        pending = {table: [{"PutRequest": {"Item": serialize_item(i)}} for i in chunk]}
        delays = retry_delays(attempts, base, cap, remaining)
        while pending:
            response = call_with_retries(lambda p=pending: client.batch_write_item(RequestItems=p), **retry)
            requests += 1
            pending = response.get("UnprocessedItems") or {}
            if pending:
                delay = next(delays, None)
                if delay is None:
                    left = len(pending.get(table, []))
                    raise UnprocessedError(f"BatchWriteItem left {left} item(s) unprocessed after {attempts} tries")
                sleep(delay)
        chunk.clear()

    for item in items:
        chunk.append(dict(item))
        if len(chunk) == BATCH_WRITE_SIZE:
            flush()
    if chunk:
        flush()
    return requests


#: DynamoDB's limit of keys in one BatchGetItem.
BATCH_GET_SIZE = 100


def batch_get(
    client: DynamoDBClient,
    table: str,
    keys: Sequence[Mapping[str, Any]],
    *,
    consistent: bool = True,
    attempts: int = 8,
    base: float = 0.05,
    cap: float = 2.0,
    remaining: Callable[[], float] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[dict[str, Any]]:
    """The items of ``keys`` that exist (in no particular order), ``BATCH_GET_SIZE`` keys a request.

    UnprocessedKeys are asked for again with backoff and full jitter, a bounded number of times (and a
    request refused for load, likewise).
    """
    retry = {"attempts": attempts, "base": base, "cap": cap, "remaining": remaining, "sleep": sleep}
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), BATCH_GET_SIZE):
        pending: dict[str, Any] = {
            table: {
                "Keys": [serialize_item(k) for k in keys[start : start + BATCH_GET_SIZE]],
                "ConsistentRead": consistent,
            }
        }
        delays = retry_delays(attempts, base, cap, remaining)
        while pending:
            response = call_with_retries(lambda p=pending: client.batch_get_item(RequestItems=p), **retry)
            found.extend(deserialize_item(i) for i in response.get("Responses", {}).get(table, []))
            pending = response.get("UnprocessedKeys") or {}
            if pending:
                delay = next(delays, None)
                if delay is None:
                    raise UnprocessedError(f"BatchGetItem left keys of {table} unread after {attempts} tries")
                sleep(delay)
    return found
