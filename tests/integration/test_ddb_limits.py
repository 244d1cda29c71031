"""The emulation of DynamoDB's limits (``bench.ddb_limits``) answers as DynamoDB does, on DynamoDB Local.

Plain boto3 clients with botocore's retries off (one attempt), so that each test sees exactly what the
emulation answered; what botocore would retry is botocore's business, not the emulation's.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import Counter
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from bench.ddb_limits import CONFLICT_MESSAGE, LimitsProxy

pytestmark = pytest.mark.integration

_names = itertools.count()


def client(proxy: LimitsProxy) -> Any:
    return boto3.client(
        "dynamodb",
        endpoint_url=proxy.endpoint_url,
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=32),
    )


def make_table(ddb: Any, index: bool = False) -> str:
    """A table keyed by ``pk``; with ``index``, a GSI ``by_g`` keyed by ``g`` (everything projected)."""
    name = f"limits_{os.getpid()}_{next(_names)}"
    extra: dict[str, Any] = {}
    attributes = [{"AttributeName": "pk", "AttributeType": "S"}]
    if index:
        attributes.append({"AttributeName": "g", "AttributeType": "S"})
        extra["GlobalSecondaryIndexes"] = [
            {
                "IndexName": "by_g",
                "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                "Projection": {"ProjectionType": "ALL"},
            }
        ]
    ddb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=attributes,
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )
    return name


def add(table: str, pk: str) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": table,
            "Key": {"pk": {"S": pk}},
            "UpdateExpression": "ADD n :one",
            "ExpressionAttributeValues": {":one": {"N": "1"}},
        }
    }


def code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def throttling_reason(exc: ClientError) -> str:
    """The model spells it ``throttlingReasons`` in ThrottlingException, ``ThrottlingReasons`` elsewhere."""
    reasons = exc.response.get("ThrottlingReasons") or exc.response["throttlingReasons"]
    return reasons[0]["reason"]


def test_overlapping_transactions_on_one_item_conflict_in_dynamodbs_wire_format(ddb_limits):
    # Given one hot item that every transaction writes, beside an item of its own thread, items held 15 ms
    ddb = client(ddb_limits)
    table = make_table(ddb)
    ddb_limits.configure(hold_seconds=0.015)
    outcomes: Counter[str] = Counter()
    reasons: list[list[dict[str, Any]]] = []
    lock = threading.Lock()

    def writer(thread: int) -> None:
        for i in range(50):
            try:
                ddb.transact_write_items(TransactItems=[add(table, "hot"), add(table, f"own-{thread}-{i}")])
                outcome = "accepted"
            except ClientError as exc:
                outcome = code(exc)
                with lock:
                    reasons.append(exc.response.get("CancellationReasons", []))
            with lock:
                outcomes[outcome] += 1

    # When 16 threads write 50 transactions each
    threads = [threading.Thread(target=writer, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then some were cancelled for a conflict on the hot item, as DynamoDB says it, and botocore read the reasons
    assert outcomes["accepted"] + outcomes["TransactionCanceledException"] == 800, outcomes
    assert outcomes["TransactionCanceledException"] > 0 and outcomes["accepted"] > 0
    expected = [{"Code": "TransactionConflict", "Message": CONFLICT_MESSAGE}, {"Code": "None"}]
    assert all(r == expected for r in reasons), reasons[:3]
    # Only the accepted ones were written
    hot = ddb.get_item(TableName=table, Key={"pk": {"S": "hot"}}, ConsistentRead=True)["Item"]
    assert int(hot["n"]["N"]) == outcomes["accepted"]
    # And the emulation counted them, by operation and reason, and by item
    stats = ddb_limits.stats()
    assert stats["refused"]["TransactWriteItems"] == {"TransactionConflict": outcomes["TransactionCanceledException"]}
    assert stats["refused_items"] == {f"{table}:hot": {"TransactionConflict": outcomes["TransactionCanceledException"]}}
    assert stats["callers"]["-"]["TransactWriteItems"]["accepted"] == outcomes["accepted"]


def test_a_held_item_refuses_plain_writes_and_transactional_reads_but_not_reads(ddb_limits):
    # Given an item that a transaction wrote, held long after it (as a slow transaction would hold it)
    ddb = client(ddb_limits)
    table = make_table(ddb)
    ddb_limits.configure(hold_seconds=30)
    ddb.transact_write_items(TransactItems=[add(table, "held")])
    key = {"pk": {"S": "held"}}

    # When plain writes reach it, Then they fail with TransactionConflictException, which names the cause
    with pytest.raises(ClientError) as put:
        ddb.put_item(TableName=table, Item={**key, "n": {"N": "7"}})
    assert code(put.value) == "TransactionConflictException"
    assert put.value.response["Error"]["Message"] == CONFLICT_MESSAGE
    for call in (
        lambda: ddb.update_item(
            TableName=table, Key=key, UpdateExpression="SET x = :x", ExpressionAttributeValues={":x": {"S": "y"}}
        ),
        lambda: ddb.delete_item(TableName=table, Key=key),
    ):
        with pytest.raises(ClientError) as refused:
            call()
        assert code(refused.value) == "TransactionConflictException"
    # A transactional read is cancelled for it, item by item
    with pytest.raises(ClientError) as read:
        ddb.transact_get_items(
            TransactItems=[
                {"Get": {"TableName": table, "Key": {"pk": {"S": "free"}}}},
                {"Get": {"TableName": table, "Key": key}},
            ]
        )
    assert read.value.response["CancellationReasons"] == [
        {"Code": "None"},
        {"Code": "TransactionConflict", "Message": CONFLICT_MESSAGE},
    ]
    # A batch writes the others and hands the held one back unprocessed
    answer = ddb.batch_write_item(
        RequestItems={
            table: [
                {"PutRequest": {"Item": {**key, "n": {"N": "9"}}}},
                {"PutRequest": {"Item": {"pk": {"S": "other"}}}},
            ]
        }
    )
    assert answer["UnprocessedItems"] == {table: [{"PutRequest": {"Item": {**key, "n": {"N": "9"}}}}]}
    # Reads are not refused, and the item is as the transaction left it
    assert ddb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"]["n"] == {"N": "1"}
    assert "Item" in ddb.get_item(TableName=table, Key={"pk": {"S": "other"}}, ConsistentRead=True)
    # Another item is free
    ddb.put_item(TableName=table, Item={"pk": {"S": "free"}})
    stats = ddb_limits.stats()
    assert stats["refused"]["PutItem"] == {"TransactionConflictException": 1}
    assert stats["refused"]["TransactGetItems"] == {"TransactionConflict": 1}
    assert stats["refused"]["BatchWriteItem"] == {"UnprocessedItems": 1}
    assert stats["refused_items"][f"{table}:held"] == {"TransactionConflictException": 3, "TransactionConflict": 2}


def exhaust(ddb: Any, table: str, pk: str, g: str | None = None) -> ClientError:
    """Write to one partition key until refused (at 1 unit a second, a few writes at most)."""
    for i in range(50):
        item = {"pk": {"S": f"{pk}-{i}" if g else pk}, "n": {"N": str(i)}}
        if g:
            item["g"] = {"S": g}
        try:
            ddb.put_item(TableName=table, Item=item)
        except ClientError as exc:
            return exc
    raise AssertionError("never throttled")


@pytest.mark.parametrize(
    ("billing", "error", "reason"),
    [
        ("PROVISIONED", "ProvisionedThroughputExceededException", "ProvisionedThroughputExceeded"),
        ("PAY_PER_REQUEST", "ThrottlingException", "ThrottlingError"),
    ],
)
def test_a_partition_past_its_write_units_is_throttled_as_its_billing_mode_says(ddb_limits, billing, error, reason):
    # Given 1 write unit a second per partition key
    ddb = client(ddb_limits)
    table = make_table(ddb)
    ddb_limits.configure(write_units=1, billing={table: billing})

    # When one key is written until refused
    refused = exhaust(ddb, table, "busy")

    # Then the single write fails with the mode's error; a transaction on that key is cancelled with its reason
    assert code(refused) == error
    assert throttling_reason(refused).startswith("TableWrite")
    with pytest.raises(ClientError) as txn:
        ddb.transact_write_items(TransactItems=[add(table, "calm"), add(table, "busy")])
    assert code(txn.value) == "TransactionCanceledException"
    assert [r["Code"] for r in txn.value.response["CancellationReasons"]] == ["None", reason]
    # And another partition key is not affected
    ddb.put_item(TableName=table, Item={"pk": {"S": "calm"}})
    stats = ddb_limits.stats()
    assert stats["refused"]["PutItem"] == {error: 1}
    assert stats["refused"]["TransactWriteItems"] == {reason: 1}
    assert stats["refused_partitions"][f"{table}:busy"] == {error: 1, reason: 1}
    assert stats["units"][f"{table}:calm"]["write"] >= 1


def test_index_partitions_have_their_own_units(ddb_limits):
    # Given items of distinct table keys that share one index key
    ddb = client(ddb_limits)
    table = make_table(ddb, index=True)
    ddb_limits.configure(write_units=1, billing={table: "PROVISIONED"})

    # When they are written one after the other
    refused = exhaust(ddb, table, "item", g="shared")

    # Then the index's partition is what refuses them, and the counts say so
    assert code(refused) == "ProvisionedThroughputExceededException"
    assert throttling_reason(refused) == "IndexWriteProvisionedThroughputExceeded"
    stats = ddb_limits.stats()
    assert stats["refused_partitions"] == {f"{table}/by_g:shared": {"ProvisionedThroughputExceededException": 1}}
    assert stats["units"][f"{table}/by_g:shared"]["write"] >= 1
    # An index key change is a delete at the old key and a put at the new one
    ddb_limits.configure(write_units=None)
    ddb.put_item(TableName=table, Item={"pk": {"S": "mover"}, "g": {"S": "from"}})
    ddb_limits.configure(write_units=100)
    ddb.update_item(
        TableName=table,
        Key={"pk": {"S": "mover"}},
        UpdateExpression="SET g = :g",
        ExpressionAttributeValues={":g": {"S": "to"}},
    )
    units = ddb_limits.stats()["units"]
    assert units[f"{table}/by_g:from"]["write"] == 1 and units[f"{table}/by_g:to"]["write"] == 1


def test_batches_return_throttled_items_unprocessed_and_fail_when_all_are(ddb_limits):
    # Given a partition key with no write units left, and one with no read units left
    ddb = client(ddb_limits)
    table = make_table(ddb)
    ddb_limits.configure(write_units=1, read_units=1, billing={table: "PROVISIONED"})
    exhaust(ddb, table, "busy")
    put = {"PutRequest": {"Item": {"pk": {"S": "busy"}, "n": {"N": "1"}}}}

    # When a batch writes to it and to fresh keys, Then only the busy one comes back
    answer = ddb.batch_write_item(RequestItems={table: [put, {"PutRequest": {"Item": {"pk": {"S": "fresh"}}}}]})
    assert answer["UnprocessedItems"] == {table: [put]}
    # And a batch of only throttled items fails as a single request would
    with pytest.raises(ClientError) as batch:
        ddb.batch_write_item(RequestItems={table: [put]})
    assert code(batch.value) == "ProvisionedThroughputExceededException"

    # Reads: consistent reads of one key until refused, then a batch of it and a fresh key
    for _ in range(50):
        try:
            ddb.get_item(TableName=table, Key={"pk": {"S": "fresh"}}, ConsistentRead=True)
        except ClientError as exc:
            assert code(exc) == "ProvisionedThroughputExceededException"
            break
    else:
        raise AssertionError("reads never throttled")
    keys = {"Keys": [{"pk": {"S": "fresh"}}, {"pk": {"S": "calm"}}], "ConsistentRead": True}
    answer = ddb.batch_get_item(RequestItems={table: keys})
    assert answer["UnprocessedKeys"][table]["Keys"] == [{"pk": {"S": "fresh"}}]
    assert answer["UnprocessedKeys"][table]["ConsistentRead"] is True
    stats = ddb_limits.stats()
    assert stats["refused"]["BatchWriteItem"] == {"UnprocessedItems": 1, "ProvisionedThroughputExceededException": 1}
    assert stats["refused"]["GetItem"] == {"ProvisionedThroughputExceededException": 1}


def test_a_query_reads_one_partition_of_its_index(ddb_limits):
    # Given 1 read unit a second per partition key
    ddb = client(ddb_limits)
    table = make_table(ddb, index=True)
    ddb.put_item(TableName=table, Item={"pk": {"S": "a"}, "g": {"S": "hot"}})
    ddb_limits.configure(read_units=1)
    query = {
        "TableName": table,
        "IndexName": "by_g",
        "KeyConditionExpression": "#g = :g",
        "ExpressionAttributeNames": {"#g": "g"},
    }

    # When one index key is queried until refused
    for _ in range(50):
        try:
            found = ddb.query(**query, ExpressionAttributeValues={":g": {"S": "hot"}})
            assert "ConsumedCapacity" not in found  # not asked for: not answered
        except ClientError as exc:
            assert code(exc) == "ThrottlingException"
            break
    else:
        raise AssertionError("queries never throttled")

    # Then another index key is read at once
    assert ddb.query(**query, ExpressionAttributeValues={":g": {"S": "cold"}})["Count"] == 0
    assert ddb_limits.stats()["refused_partitions"] == {f"{table}/by_g:hot": {"ThrottlingException": 1}}


def test_disabled_it_forwards_everything(ddb_limits):
    ddb = client(ddb_limits)
    table = make_table(ddb)
    ddb_limits.configure(hold_seconds=30, enabled=False)
    ddb.transact_write_items(TransactItems=[add(table, "x")])
    ddb.put_item(TableName=table, Item={"pk": {"S": "x"}})
    assert ddb_limits.stats()["refused"] == {}


@pytest.mark.parametrize("backend", ["local"], indirect=True)
def test_the_fixture_puts_the_emulation_in_front_of_the_config_fixtures_tables(config, ddb_limits):
    # Given the usual fixtures (``config`` sets the endpoint too), asked for after or before ``ddb_limits``
    from sosw.managers.task import TaskManager

    # When the project's code writes
    tm = TaskManager(config)
    tm.create_tasks(tm.get_labourer("alpha"), [{"n": 1}])

    # Then its requests went through the emulation
    assert os.environ["AWS_ENDPOINT_URL_DYNAMODB"] == ddb_limits.endpoint_url
    assert sum(ops.get("BatchWriteItem", {}).get("accepted", 0) for ops in ddb_limits.stats()["callers"].values()) >= 1
