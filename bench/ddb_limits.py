"""DynamoDB's two limits in front of DynamoDB Local, on loopback: item conflicts between transactions, and
throughput per partition key.

DynamoDB Local is kinder than DynamoDB: it serialises transactions (16 threads writing one item never
conflict there) and never throttles. Code that shares items or keys between many callers meets both on
AWS. This proxy refuses requests as DynamoDB does at those two limits, and forwards the rest unchanged.

Run in its own process (``python -m bench.ddb_limits UPSTREAM_URL``; it prints ``PORT <n>`` and serves until
its stdin closes), as ``bench.ddb_proxy``: its Python work never competes for the GIL with the code being
tried. :class:`LimitsProxy` starts and drives it; ``tests/conftest.py``'s ``ddb_limits`` fixture puts it in
front of the session's DynamoDB Local. Stdlib only.

**Transactions** (AWS developer guide, "Transaction conflict handling"). A ``TransactWriteItems`` holds its items
(table and key; a ``Put``'s key read from its item with the table's key schema, learned once by
``DescribeTable``) for the length of its call plus ``hold_seconds``. While an item is held:

- another ``TransactWriteItems`` touching it is cancelled: ``TransactionCanceledException`` with one
  ``CancellationReasons`` entry per action, in order (``TransactionConflict`` for the held items, ``None``
  for the others), as DynamoDB writes it;
- a ``PutItem``, ``UpdateItem`` or ``DeleteItem`` of it fails with ``TransactionConflictException``;
- a ``TransactGetItems`` reading it is cancelled the same way ("an item within a TransactGetItems request is
  part of an ongoing TransactWriteItems");
- ``GetItem``, ``BatchGetItem`` and ``Query`` read it (the guide: a concurrent ``GetItem`` and transaction can
  both succeed; reads are read-committed);
- a ``BatchWriteItem``'s write of it comes back in ``UnprocessedItems`` and the others are written: the guide
  makes a batch's writes serializable with transactions item by item, and the batch's documented way to
  refuse one item is to return it unprocessed (our reading; the guide names no error for it).

A cancelled transaction holds nothing. A transaction that DynamoDB Local itself cancelled (a condition) held
its items all the same: AWS takes them before it checks conditions.

**Throughput** (``write_units`` / ``read_units`` per second, ``None``: unlimited). Each partition key value of a
table, and of each global secondary index, has a bucket of that many units, refilled continuously (a
rolling second). AWS's units: a write 1 WCU per KB of the larger of the old and new item, twice in a
transaction (a ``ConditionCheck`` too); in an index, an entry whose key changes is a delete at the old key
and a put at the new one, an entry whose projected attributes change is a put, each 1 WCU per KB of the
entry; a strongly consistent read 1 RCU per 4 KB, eventually consistent half, transactional twice; a
``Query`` reads one partition of the table or index. A request is admitted when every partition it writes
(reads) has units left; it is charged its estimate then, and after the call what it really used (the
buckets may go below zero: the next requests wait). Past the limit it answers as DynamoDB does, by the
table's billing mode (``billing``, on-demand by default):

- ``PutItem`` ``UpdateItem`` ``DeleteItem`` ``GetItem`` ``Query``: ``ThrottlingException`` (on-demand) or
  ``ProvisionedThroughputExceededException`` (provisioned), with ``ThrottlingReasons``; botocore's standard
  retry mode retries both itself;
- ``TransactWriteItems`` ``TransactGetItems``: ``TransactionCanceledException``, reason ``ThrottlingError``
  (on-demand) or ``ProvisionedThroughputExceeded`` (provisioned) for the throttled actions; botocore does
  not retry a cancelled transaction;
- ``BatchWriteItem`` ``BatchGetItem``: the throttled items in ``UnprocessedItems`` / ``UnprocessedKeys``; all of
  them throttled, the error above.

Approximations, on purpose: to know which index entries a write changes, the items' old and new images are
read from upstream around the write (``BatchGetItem``, strongly consistent), so a concurrent writer between
those reads and the write can make the count a little off; an ``UpdateItem`` is admitted on its old image
(its new one is known only after) and charged the difference after. ``BatchWriteItem`` reads no images (a put
counts the new item's index entries, a delete the table only). ``Scan`` is never limited (it spreads over
every partition). Only the limits are emulated: no adaptive capacity, no burst credit, no table-level quota.

**What it counts** (``GET /_limits/stats``): refusals by operation and reason, by item, by partition key and
by caller (the ``app/<id>`` of the User-Agent, as ``bench.ddb_proxy`` reads it); accepted requests by caller
and operation; units used by partition key.

**Control API** (same port): ``POST /_limits/config`` ``{"hold_seconds": 0.015, "write_units": 333 | null,
"read_units": 1000 | null, "billing": {"<table>": "PROVISIONED"}, "enabled": true}`` (keys left out keep their
value; it answers the whole config), ``GET /_limits/stats``, ``POST /_limits/reset`` (holds, buckets, stats
and learnt schemas cleared; the config kept).
"""

from __future__ import annotations

import base64
import json
import math
import re
import sys
import threading
import time
import urllib.request
import uuid
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any

from bench.ddb_proxy import caller_of, operation_of
from bench.serving import (
    Answer,
    LoopbackServer,
    Upstream,
    UpstreamError,
    forward,
    json_answer,
    reply,
    request_headers,
    serve_until_stdin_closes,
    start_server,
    stop_server,
)

_TYPE = "com.amazonaws.dynamodb.v20120810#"
ON_DEMAND, PROVISIONED = "PAY_PER_REQUEST", "PROVISIONED"
CONFLICT_MESSAGE = "Transaction is ongoing for the item"
THROTTLED = {
    # (error of a single request, reason in a cancelled transaction, message), as DynamoDB words them
    ON_DEMAND: (
        "ThrottlingException",
        "ThrottlingError",
        "Throughput exceeds the current capacity of your table or index. DynamoDB is automatically scaling your "
        "table or index so please try again shortly. If exceptions persist, check if you have a hot key: "
        "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html",
    ),
    PROVISIONED: (
        "ProvisionedThroughputExceededException",
        "ProvisionedThroughputExceeded",
        "The level of configured provisioned throughput for the table was exceeded. Consider increasing your "
        "provisioning level with the UpdateTable API.",
    ),
}
SINGLE_WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
HANDLED = SINGLE_WRITES | {
    "TransactWriteItems",
    "TransactGetItems",
    "BatchWriteItem",
    "BatchGetItem",
    "GetItem",
    "Query",
}
_EQUALS = re.compile(r"(#?[A-Za-z0-9_.\-]+)\s*=\s*(:[A-Za-z0-9_]+)")


# ---------------------------------------------------------------------------------------------- units


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one attribute value as DynamoDB counts them (close enough: numbers are estimated)."""
    kind, data = next(iter(value.items()))
    if kind == "S":
        return len(data.encode())
    if kind == "N":
        return len(data.lstrip("-").replace(".", "")) // 2 + 1
    if kind == "B":
        return len(base64.b64decode(data))
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in data)
    if kind == "NS":
        return sum(len(n) // 2 + 1 for n in data)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) for b in data)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in data)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + value_size(v) for k, v in data.items())
    return len(json.dumps(data))


def item_size(item: Mapping[str, Any] | None) -> int:
    return sum(len(name.encode()) + value_size(value) for name, value in (item or {}).items())


def write_units(size: int) -> float:
    return float(max(1, math.ceil(size / 1024)))


def read_units(size: int, consistent: bool) -> float:
    units = float(max(1, math.ceil(size / 4096)))
    return units if consistent else units / 2


def scalar(value: Mapping[str, Any]) -> str:
    return str(next(iter(value.values())))


# ---------------------------------------------------------------------------------------------- schemas


@dataclass(frozen=True)
class Index:
    name: str
    key: tuple[str, ...]  # hash, then range if any
    projection: str  # ALL, KEYS_ONLY, INCLUDE
    include: frozenset[str]

    def projected(self, item: Mapping[str, Any], table_key: tuple[str, ...]) -> dict[str, Any] | None:
        """The index entry of ``item`` (None: the item is not in the index, a key attribute is missing)."""
        if any(name not in item for name in self.key):
            return None
        if self.projection == "ALL":
            return dict(item)
        names = set(self.key) | set(table_key) | (self.include if self.projection == "INCLUDE" else set())
        return {k: v for k, v in item.items() if k in names}


@dataclass(frozen=True)
class Schema:
    table: str
    key: tuple[str, ...]
    indexes: tuple[Index, ...]
    arn: str

    def key_of(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {name: item[name] for name in self.key if name in item}

    def item_id(self, key: Mapping[str, Any]) -> str:
        return f"{self.table}:" + ":".join(scalar(key[name]) for name in self.key if name in key)

    def partition(self, item: Mapping[str, Any], index: Index | None = None) -> str:
        if index is None:
            return f"{self.table}:{scalar(item[self.key[0]])}"
        return f"{self.table}/{index.name}:{scalar(item[index.key[0]])}"


def _schema(description: Mapping[str, Any]) -> Schema:
    def key(schema: list[dict[str, str]]) -> tuple[str, ...]:
        return tuple(k["AttributeName"] for k in sorted(schema, key=lambda k: k["KeyType"] != "HASH"))

    indexes = tuple(
        Index(
            g["IndexName"],
            key(g["KeySchema"]),
            g.get("Projection", {}).get("ProjectionType", "ALL"),
            frozenset(g.get("Projection", {}).get("NonKeyAttributes", [])),
        )
        for g in description.get("GlobalSecondaryIndexes", [])
    )
    return Schema(description["TableName"], key(description["KeySchema"]), indexes, description.get("TableArn", ""))


def write_plan(
    schema: Schema, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, factor: float
) -> dict[str, float]:
    """Write units by partition key for changing ``old`` into ``new`` (None: absent), AWS's rules.

    The table's partition pays ``factor`` (2 in a transaction) per KB of the larger image; each index pays
    1 WCU per KB for a delete at the old key and a put at the new one when the key changes, a put when only
    projected attributes change.
    """
    either = new if new is not None else old
    plan: Counter[str] = Counter()
    if either is None:
        return {}
    plan[schema.partition(either)] += factor * write_units(max(item_size(old), item_size(new)))
    for index in schema.indexes:
        before = index.projected(old, schema.key) if old is not None else None
        after = index.projected(new, schema.key) if new is not None else None
        old_key = [scalar(before[k]) for k in index.key] if before is not None else None
        new_key = [scalar(after[k]) for k in index.key] if after is not None else None
        if old_key != new_key:
            if before is not None:
                plan[schema.partition(before, index)] += write_units(item_size(before))
            if after is not None:
                plan[schema.partition(after, index)] += write_units(item_size(after))
        elif after is not None and before != after:
            plan[schema.partition(after, index)] += write_units(item_size(after))
    return dict(plan)


# ---------------------------------------------------------------------------------------------- state


@dataclass
class Config:
    hold_seconds: float = 0.0
    write_units: float | None = None
    read_units: float | None = None
    billing: dict[str, str] = field(default_factory=dict)
    enabled: bool = True

    def update(self, changes: Mapping[str, Any]) -> None:
        unknown = set(changes) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        for name, value in changes.items():
            if name == "billing":
                value = {str(t): str(mode).upper() for t, mode in (value or {}).items()}
                bad = {t: m for t, m in value.items() if m not in (ON_DEMAND, PROVISIONED, "ON_DEMAND")}
                if bad:
                    raise ValueError(f"billing must be {ON_DEMAND} or {PROVISIONED}: {bad}")
                value = {t: ON_DEMAND if m == "ON_DEMAND" else m for t, m in value.items()}
            elif name == "hold_seconds":
                value = max(0.0, float(value))
            elif name in ("write_units", "read_units") and value is not None:
                value = float(value)
                if value <= 0:
                    raise ValueError(f"{name} must be above 0, or null for no limit")
            elif name == "enabled":
                value = bool(value)
            setattr(self, name, value)

    def mode(self, table: str) -> str:
        return self.billing.get(table, ON_DEMAND)


class Bucket:
    """A rolling second of units: holds at most ``rate``, refilled at ``rate`` a second; may owe (below 0)."""

    def __init__(self, rate: float, now: float) -> None:
        self.tokens, self.stamp = rate, now

    def refill(self, rate: float, now: float) -> None:
        self.tokens = min(rate, self.tokens + (now - self.stamp) * rate)
        self.stamp = now


class Stats:
    """What was refused and accepted, by operation, reason, item, partition key and caller."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.refused: defaultdict[str, Counter[str]] = defaultdict(Counter)  # operation -> reason -> requests
        self.items: defaultdict[str, Counter[str]] = defaultdict(Counter)  # item -> reason -> refusals
        self.partitions: defaultdict[str, Counter[str]] = defaultdict(Counter)  # partition -> reason -> refusals
        self.callers: defaultdict[str, defaultdict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        self.units: defaultdict[str, Counter[str]] = defaultdict(Counter)  # partition -> read/write -> units

    def partial(self, operation: str, reason: str) -> None:
        """An accepted batch that left some items unprocessed."""
        with self.lock:
            self.refused[operation][reason] += 1

    def outcome(self, caller: str, operation: str, outcome: str) -> None:
        with self.lock:
            self.callers[caller][operation][outcome] += 1
            if outcome != "accepted":
                self.refused[operation][outcome] += 1

    def refusal(self, *, items: Iterable[str] = (), partitions: Iterable[str] = (), reason: str) -> None:
        with self.lock:
            for item in items:
                self.items[item][reason] += 1
            for partition in partitions:
                self.partitions[partition][reason] += 1

    def used(self, kind: str, plan: Mapping[str, float]) -> None:
        with self.lock:
            for partition, units in plan.items():
                self.units[partition][kind] += units

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "refused": {op: dict(c) for op, c in self.refused.items()},
                "refused_items": {item: dict(c) for item, c in self.items.items()},
                "refused_partitions": {p: dict(c) for p, c in self.partitions.items()},
                "callers": {who: {op: dict(c) for op, c in ops.items()} for who, ops in self.callers.items()},
                "units": {p: dict(c) for p, c in self.units.items()},
            }


class NotUnderstood(Exception):
    """DynamoDB Local refused one of our own requests (an unknown table, a bad key): the client's request is
    forwarded as it came, so that DynamoDB Local answers it with its own error."""


class Refused(Exception):
    """A request answered by the emulation instead of DynamoDB Local."""

    def __init__(self, answer: Answer, outcome: str) -> None:
        super().__init__(outcome)
        self.answer, self.outcome = answer, outcome


def dynamodb_answer(status: int, body: Mapping[str, Any]) -> Answer:
    """An answer as DynamoDB sends it: its content type, a request id and the CRC32 that botocore checks."""
    data = json.dumps(body).encode()
    headers = [
        ("Content-Type", "application/x-amz-json-1.0"),
        ("x-amzn-RequestId", uuid.uuid4().hex.upper()),
        ("x-amz-crc32", str(zlib.crc32(data) & 0xFFFFFFFF)),
    ]
    return Answer(status, headers, data)


def error(code: str, message: str, **extra: Any) -> Answer:
    return dynamodb_answer(400, {"__type": _TYPE + code, "message": message, **extra})


def cancelled(reasons: list[tuple[str, str] | None]) -> Answer:
    """``TransactionCanceledException`` with one reason per action, in order (None: that action was fine)."""
    entries = [{"Code": "None"} if r is None else {"Code": r[0], "Message": r[1]} for r in reasons]
    codes = ", ".join(e["Code"] for e in entries)
    return dynamodb_answer(
        400,
        {
            "__type": _TYPE + "TransactionCanceledException",
            "CancellationReasons": entries,
            "Message": f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
        },
    )


# ---------------------------------------------------------------------------------------------- the emulation


class Limits:
    """The emulation's state and rules; one per proxy process, shared by its serving threads."""

    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.config = Config()
        self.lock = threading.Lock()  # holds and buckets: a request's check and its taking are one step
        self.holds: dict[str, float] = {}  # item -> when its hold ends (inf while its transaction is under way)
        self.buckets: dict[tuple[str, str], Bucket] = {}
        self.schemas: dict[str, Schema] = {}
        self.stats = Stats()

    def reset(self) -> None:
        with self.lock:
            self.holds.clear()
            self.buckets.clear()
            self.schemas.clear()
            self.stats = Stats()

    def configure(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.config.update(changes)
            self.buckets.clear()  # new rates: every partition starts full
            return asdict(self.config)

    # ------------------------------------------------------------------ upstream

    def call(self, operation: str, payload: Mapping[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        """One request of our own to DynamoDB Local (schemas, images), with the client's credentials."""
        body = json.dumps(payload).encode()
        sent = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "x-amz-target")}
        sent.update({"X-Amz-Target": f"DynamoDB_20120810.{operation}", "Content-Length": str(len(body))})
        answer = self.upstream.exchange("POST", "/", body, sent)
        parsed = json.loads(answer.body or b"{}")
        if answer.status != 200:
            raise NotUnderstood(f"{operation}: {answer.status} {parsed}")
        return parsed

    def schema(self, table: str, headers: Mapping[str, str]) -> Schema:
        known = self.schemas.get(table)
        if known is None:
            known = self.schemas[table] = _schema(self.call("DescribeTable", {"TableName": table}, headers)["Table"])
        return known

    def images(
        self, keys: list[tuple[Schema, dict[str, Any]]], headers: Mapping[str, str]
    ) -> dict[str, dict[str, Any] | None]:
        """The items as they are now (strongly consistent), by item id; None where there is none."""
        found: dict[str, dict[str, Any] | None] = {s.item_id(k): None for s, k in keys}
        request: dict[str, Any] = {}
        for schema, key in keys:
            request.setdefault(schema.table, {"Keys": [], "ConsistentRead": True})["Keys"].append(key)
        while request:
            response = self.call("BatchGetItem", {"RequestItems": request}, headers)
            for table, items in response.get("Responses", {}).items():
                schema = self.schemas[table]
                for item in items:
                    found[schema.item_id(schema.key_of(item))] = item
            request = response.get("UnprocessedKeys") or {}
        return found

    # ------------------------------------------------------------------ holds and buckets (under self.lock)

    def _held(self, item: str, now: float) -> bool:
        until = self.holds.get(item)
        if until is None:
            return False
        if until > now:
            return True
        del self.holds[item]
        return False

    def _short(self, kind: str, plan: Mapping[str, float], now: float) -> list[str]:
        """The partitions of ``plan`` that have no units left for it (none: the plan may go ahead)."""
        rate = self.config.write_units if kind == "write" else self.config.read_units
        if rate is None:
            return []
        short = []
        for partition, units in plan.items():
            bucket = self.buckets.setdefault((kind, partition), Bucket(rate, now))
            bucket.refill(rate, now)
            if bucket.tokens < min(units, rate):
                short.append(partition)
        return short

    def _take(self, kind: str, plan: Mapping[str, float], now: float) -> None:
        rate = self.config.write_units if kind == "write" else self.config.read_units
        if rate is None:
            return
        for partition, units in plan.items():
            bucket = self.buckets.setdefault((kind, partition), Bucket(rate, now))
            bucket.refill(rate, now)
            bucket.tokens -= units

    def charge(self, kind: str, estimate: Mapping[str, float], actual: Mapping[str, float]) -> None:
        """After the call: what it really used, less what its admission took."""
        self.stats.used(kind, actual)
        difference = {p: actual.get(p, 0.0) - estimate.get(p, 0.0) for p in set(actual) | set(estimate)}
        with self.lock:
            self._take(kind, {p: d for p, d in difference.items() if d}, time.monotonic())

    def throttled(self, table: str) -> tuple[str, str, str]:
        return THROTTLED[self.config.mode(table)]

    def _admit_transaction(
        self, kind: str, schemas: list[Schema], items: list[str], plans: list[dict[str, float]]
    ) -> None:
        """Let a transaction go ahead (its units taken; a write's items held), or cancel it:
        for a conflict when one of its items is held, else for throughput when one of its partitions is short."""
        with self.lock:
            now = time.monotonic()
            held = [self._held(item, now) for item in items]
            short = [] if any(held) else [self._short(kind, plan, now) for plan in plans]
            if not any(held) and not any(short):
                for plan in plans:
                    self._take(kind, plan, now)
                if kind == "write":
                    self.holds.update(dict.fromkeys(items, math.inf))
        if any(held):
            self.stats.refusal(items=[i for i, h in zip(items, held, strict=True) if h], reason="TransactionConflict")
            raise Refused(
                cancelled([("TransactionConflict", CONFLICT_MESSAGE) if h else None for h in held]),
                "TransactionConflict",
            )
        if any(short):
            reasons = [self.throttled(s.table)[1:] if p else None for s, p in zip(schemas, short, strict=True)]
            reason = next(r for r in reasons if r)[0]
            self.stats.refusal(partitions=[p for ps in short for p in ps], reason=reason)
            raise Refused(cancelled(reasons), reason)

    def throttle_error(self, schema: Schema, kind: str, partitions: list[str]) -> Refused:
        code, _reason, message = self.throttled(schema.table)
        where = "Index" if any("/" in p.split(":", 1)[0] for p in partitions) else "Table"
        provisioned = self.config.mode(schema.table) == PROVISIONED
        limit = "ProvisionedThroughputExceeded" if provisioned else "KeyRangeThroughputExceeded"
        reasons = [{"reason": f"{where}{kind.title()}{limit}", "resource": schema.arn}]
        self.stats.refusal(partitions=partitions, reason=code)
        # DynamoDB's model names the field ``ThrottlingReasons`` in one exception and ``throttlingReasons`` in the other
        field = "throttlingReasons" if code == "ThrottlingException" else "ThrottlingReasons"
        return Refused(error(code, message, **{field: reasons}), code)

    # ------------------------------------------------------------------ operations

    def handle(self, operation: str, body: dict[str, Any], headers: dict[str, str], caller: str) -> Answer:
        try:
            answer = getattr(self, f"_{operation}")(body, headers)
        except Refused as refused:
            self.stats.outcome(caller, operation, refused.outcome)
            return refused.answer
        self.stats.outcome(caller, operation, "accepted")
        return answer

    def _forward(self, operation: str, body: Mapping[str, Any], headers: Mapping[str, str]) -> Answer:
        data = json.dumps(body).encode()
        sent = {k: v for k, v in headers.items() if k.lower() != "content-length"}
        sent["Content-Length"] = str(len(data))
        return self.upstream.exchange("POST", "/", data, sent)

    def _writes(
        self, actions: list[tuple[str, dict[str, Any]]], headers: Mapping[str, str], factor: float
    ) -> tuple[
        list[tuple[Schema, dict[str, Any], str]], dict[str, dict[str, Any] | None] | None, list[dict[str, float]]
    ]:
        """Each action's (schema, key, item id), the items' old images (None: no write limit), and each action's
        estimated write plan."""
        targets = []
        for kind, spec in actions:
            schema = self.schema(spec["TableName"], headers)
            key = schema.key_of(spec["Item"]) if kind == "Put" else spec["Key"]
            targets.append((schema, key, schema.item_id(key)))
        limited = self.config.write_units is not None
        if not limited:
            return targets, None, [{} for _ in targets]
        old = self.images([(s, k) for s, k, _ in targets], headers)
        plans = []
        for (kind, spec), (schema, key, item) in zip(actions, targets, strict=True):
            before = old.get(item)
            after = spec["Item"] if kind == "Put" else None if kind == "Delete" else before
            if kind == "ConditionCheck":
                plans.append({schema.partition(key): factor * write_units(item_size(before))})
            else:
                plans.append(write_plan(schema, before, after, factor) or {schema.partition(key): factor})
        return targets, old, plans

    def _settle(
        self,
        actions: list[tuple[str, dict[str, Any]]],
        targets: list[tuple[Schema, dict[str, Any], str]],
        old: Mapping[str, dict[str, Any] | None] | None,
        estimates: list[dict[str, float]],
        headers: Mapping[str, str],
        factor: float,
    ) -> None:
        """After a write: read the new images and charge each action what it really used."""
        if old is None:  # not limited when it was admitted
            return
        try:
            new = self.images([(s, k) for s, k, _ in targets], headers)
        except (NotUnderstood, UpstreamError):  # the table went meanwhile: the estimate stands
            return
        for (kind, _spec), (schema, key, item), estimate in zip(actions, targets, estimates, strict=True):
            if kind == "ConditionCheck":
                used = {schema.partition(key): factor * write_units(item_size(old.get(item)))}
            else:
                used = write_plan(schema, old.get(item), new.get(item), factor) or {schema.partition(key): factor}
            self.charge("write", estimate, used)

    def _TransactWriteItems(self, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        actions = [next(iter(a.items())) for a in body["TransactItems"]]
        targets, old, plans = self._writes(actions, headers, 2.0)
        items = [item for _, _, item in targets]
        self._admit_transaction("write", [s for s, _k, _i in targets], items, plans)
        try:
            answer = self._forward("TransactWriteItems", body, headers)
        finally:
            until = time.monotonic() + self.config.hold_seconds
            with self.lock:
                for item in items:
                    self.holds[item] = until
        self._settle(actions, targets, old, plans, headers, 2.0)
        return answer

    def _single_write(self, kind: str, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        actions = [(kind, body)]
        targets, old, plans = self._writes(actions, headers, 1.0)
        schema, _key, item = targets[0]
        with self.lock:
            now = time.monotonic()
            held = self._held(item, now)
            short = [] if held else self._short("write", plans[0], now)
            if not held and not short:
                self._take("write", plans[0], now)
        if held:
            self.stats.refusal(items=[item], reason="TransactionConflictException")
            raise Refused(error("TransactionConflictException", CONFLICT_MESSAGE), "TransactionConflictException")
        if short:
            raise self.throttle_error(schema, "write", short)
        answer = self._forward(f"{kind}Item", body, headers)
        self._settle(actions, targets, old, plans, headers, 1.0)
        return answer

    def _PutItem(self, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        return self._single_write("Put", body, headers)

    def _UpdateItem(self, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        return self._single_write("Update", body, headers)

    def _DeleteItem(self, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        return self._single_write("Delete", body, headers)

    def _BatchWriteItem(self, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        requests = [(table, r) for table, rs in body["RequestItems"].items() for r in rs]
        plans, ids = [], []
        for table, request in requests:
            schema = self.schema(table, headers)
            if "PutRequest" in request:
                new = request["PutRequest"]["Item"]
                key = schema.key_of(new)
                plans.append(write_plan(schema, None, new, 1.0))
            else:
                key = request["DeleteRequest"]["Key"]
                plans.append({schema.partition(key): 1.0})
            ids.append(schema.item_id(key))
        refused: list[str | None] = []
        with self.lock:
            now = time.monotonic()
            for plan, item in zip(plans, ids, strict=True):
                if self._held(item, now):
                    refused.append("TransactionConflict")
                elif short := self._short("write", plan, now):
                    refused.append("throttled")
                    self.stats.refusal(partitions=short, reason=self.throttled(item.split(":", 1)[0])[0])
                else:
                    refused.append(None)
                    self._take("write", plan, now)
        self.stats.refusal(
            items=[i for i, r in zip(ids, refused, strict=True) if r == "TransactionConflict"],
            reason="TransactionConflict",
        )
        kept: dict[str, list[Any]] = {}
        unprocessed: dict[str, list[Any]] = {}
        for (table, request), why in zip(requests, refused, strict=True):
            (unprocessed if why else kept).setdefault(table, []).append(request)
        if not kept:
            if all(r == "throttled" for r in refused):
                table = requests[0][0]
                raise self.throttle_error(self.schemas[table], "write", [])
            raise Refused(dynamodb_answer(200, {"UnprocessedItems": unprocessed}), "UnprocessedItems")
        answer = self._forward("BatchWriteItem", {**body, "RequestItems": kept}, headers)
        self.stats.used(
            "write", {p: u for plan, why in zip(plans, refused, strict=True) if not why for p, u in plan.items()}
        )
        if not unprocessed or answer.status != 200:
            return answer
        parsed = json.loads(answer.body)
        for table, rs in (parsed.get("UnprocessedItems") or {}).items():
            unprocessed.setdefault(table, []).extend(rs)
        parsed["UnprocessedItems"] = unprocessed
        self.stats.partial("BatchWriteItem", "UnprocessedItems")
        return dynamodb_answer(200, parsed)

    # ------------------------------------------------------------------ reads

    def _admit_read(self, schema: Schema, estimate: dict[str, float]) -> None:
        """Take a single read's estimated units, or refuse it as its table's billing mode says."""
        with self.lock:
            now = time.monotonic()
            short = self._short("read", estimate, now)
            if not short:
                self._take("read", estimate, now)
        if short:
            raise self.throttle_error(schema, "read", short)

    def _GetItem(self, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        schema = self.schema(body["TableName"], headers)
        consistent = bool(body.get("ConsistentRead"))
        estimate = {schema.partition(body["Key"]): read_units(0, consistent)}
        self._admit_read(schema, estimate)
        answer = self._forward("GetItem", body, headers)
        if answer.status == 200 and self.config.read_units is not None:
            size = item_size(json.loads(answer.body).get("Item"))
            self.charge("read", estimate, {p: read_units(size, consistent) for p in estimate})
        return answer

    def _TransactGetItems(self, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        gets = [a["Get"] for a in body["TransactItems"]]
        schemas = [self.schema(g["TableName"], headers) for g in gets]
        items = [s.item_id(g["Key"]) for s, g in zip(schemas, gets, strict=True)]
        plans = [{s.partition(g["Key"]): 2 * read_units(0, True)} for s, g in zip(schemas, gets, strict=True)]
        self._admit_transaction("read", schemas, items, plans)
        return self._forward("TransactGetItems", body, headers)

    def _BatchGetItem(self, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        kept: dict[str, Any] = {}
        unprocessed: dict[str, Any] = {}
        with self.lock:
            now = time.monotonic()
            for table, spec in body["RequestItems"].items():
                schema = self.schema(table, headers)
                for key in spec["Keys"]:
                    plan = {schema.partition(key): read_units(0, bool(spec.get("ConsistentRead")))}
                    short = self._short("read", plan, now)
                    target = unprocessed if short else kept
                    target.setdefault(table, {**spec, "Keys": []})["Keys"].append(key)
                    if short:
                        self.stats.refusal(partitions=short, reason=self.throttled(table)[0])
                    else:
                        self._take("read", plan, now)
        if not kept:  # every key throttled
            raise self.throttle_error(self.schemas[next(iter(body["RequestItems"]))], "read", [])
        answer = self._forward("BatchGetItem", {**body, "RequestItems": kept}, headers)
        if not unprocessed or answer.status != 200:
            return answer
        parsed = json.loads(answer.body)
        for table, spec in (parsed.get("UnprocessedKeys") or {}).items():
            unprocessed.setdefault(table, {**spec, "Keys": []})["Keys"].extend(
                k for k in spec["Keys"] if k not in unprocessed[table]["Keys"]
            )
        parsed["UnprocessedKeys"] = unprocessed
        return dynamodb_answer(200, parsed)

    def _Query(self, body: dict[str, Any], headers: dict[str, str]) -> Answer:
        schema = self.schema(body["TableName"], headers)
        index = next((i for i in schema.indexes if i.name == body.get("IndexName")), None)
        hash_name = (index.key if index else schema.key)[0]
        names = body.get("ExpressionAttributeNames") or {}
        values = body.get("ExpressionAttributeValues") or {}
        value = next(
            (
                values[v]
                for n, v in _EQUALS.findall(body.get("KeyConditionExpression", ""))
                if names.get(n, n) == hash_name
            ),
            None,
        )
        if value is None:
            return self._forward("Query", body, headers)
        partition = schema.partition({hash_name: value}, index) if index else schema.partition({hash_name: value})
        consistent = bool(body.get("ConsistentRead"))
        estimate = {partition: read_units(0, consistent)}
        self._admit_read(schema, estimate)
        asked = body.get("ReturnConsumedCapacity", "NONE") != "NONE"  # else asked here, and taken out of the answer
        answer = self._forward("Query", body if asked else {**body, "ReturnConsumedCapacity": "TOTAL"}, headers)
        if answer.status != 200:
            return answer
        parsed = json.loads(answer.body)
        used = float((parsed.get("ConsumedCapacity") or {}).get("CapacityUnits", estimate[partition]))
        self.charge("read", estimate, {partition: used})
        if asked:
            return answer
        parsed.pop("ConsumedCapacity", None)
        return dynamodb_answer(200, parsed)


# ---------------------------------------------------------------------------------------------- serving

LIMITS: Limits


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        if self.path == "/_limits/stats":
            reply(self, json_answer(200, {**LIMITS.stats.snapshot(), "config": asdict(LIMITS.config)}))
        else:
            forward(self, LIMITS.upstream, b"")

    def do_POST(self) -> None:
        body = self._body()
        if self.path == "/_limits/config":
            try:
                reply(self, json_answer(200, LIMITS.configure(json.loads(body or b"{}"))))
            except (ValueError, TypeError) as exc:
                reply(self, json_answer(400, {"error": str(exc)}))
            return
        if self.path == "/_limits/reset":
            LIMITS.reset()
            reply(self, json_answer(200, {"reset": True}))
            return
        operation = operation_of(self.headers.get("X-Amz-Target"))
        if not LIMITS.config.enabled or operation not in HANDLED:
            forward(self, LIMITS.upstream, body)
            return
        try:
            answer = LIMITS.handle(
                operation, json.loads(body), request_headers(self), caller_of(self.headers.get("User-Agent"))
            )
        except UpstreamError as exc:
            self.send_error(502, explain=str(exc))
            return
        except (NotUnderstood, KeyError, ValueError, TypeError, StopIteration):  # DynamoDB Local says what is wrong
            forward(self, LIMITS.upstream, body)
            return
        reply(self, answer)


def main() -> None:
    global LIMITS
    LIMITS = Limits(Upstream(sys.argv[1]))
    serve_until_stdin_closes(LoopbackServer(Handler))


# ---------------------------------------------------------------------------------------------- the harness's side


class LimitsProxy:
    """The emulation in its own process, in front of ``upstream_url``.

    >>> with LimitsProxy(ddb.endpoint_url, hold_seconds=0.015) as limits:
    ...     client = boto3.client("dynamodb", endpoint_url=limits.endpoint_url)
    ...     limits.configure(write_units=2, billing={"tasks": "PROVISIONED"})
    ...     limits.stats()["refused"]
    """

    def __init__(self, upstream_url: str, **config: Any) -> None:
        self.upstream_url = upstream_url
        self.initial = config
        self.endpoint_url = ""
        self._process: Any = None

    def start(self) -> LimitsProxy:
        self._process, self.endpoint_url = start_server("bench.ddb_limits", self.upstream_url)
        if self.initial:
            self.configure(**self.initial)
        return self

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.endpoint_url}{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change some settings (see the module's docstring); returns the whole config."""
        return self._call("POST", "/_limits/config", changes)

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_limits/stats")

    def reset(self) -> None:
        self._call("POST", "/_limits/reset", {})

    def close(self) -> None:
        if self._process is not None:
            stop_server(self._process)
            self._process = None

    def __enter__(self) -> LimitsProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


if __name__ == "__main__":
    main()
