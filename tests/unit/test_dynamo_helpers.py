"""The few things boto3 doesn't do for us: UnprocessedItems and transaction-conflict backoff."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from sosw.dynamo import TransactionCancelled, backoff_delays, batch_write, transact_write
from sosw.validation import item_size


@pytest.fixture
def client():
    return boto3.client("dynamodb", region_name="us-east-1")


def test_unprocessed_items_are_sent_again_with_backoff(client):
    sleeps: list[float] = []
    item = {"task_id": {"S": "a"}}
    with Stubber(client) as stub:
        stub.add_response("batch_write_item", {"UnprocessedItems": {"t": [{"PutRequest": {"Item": item}}]}})
        stub.add_response("batch_write_item", {"UnprocessedItems": {}})
        requests = batch_write(client, "t", [{"task_id": "a"}, {"task_id": "b"}], sleep=sleeps.append)
    assert requests == 2 and len(sleeps) == 1 and 0 <= sleeps[0] <= 0.05


def test_unprocessed_items_left_after_the_bound_raise(client):
    left = {"UnprocessedItems": {"t": [{"PutRequest": {"Item": {"task_id": {"S": "a"}}}}]}}
    with Stubber(client) as stub:
        for _ in range(3):
            stub.add_response("batch_write_item", left)
        with pytest.raises(RuntimeError, match="1 item"):
            batch_write(client, "t", [{"task_id": "a"}], attempts=3, sleep=lambda s: None)


CHECK = {"ConditionCheck": {"TableName": "t", "Key": {"k": {"S": "a"}}, "ConditionExpression": "attribute_exists(k)"}}


def cancel(stub: Stubber, *codes: str) -> None:
    stub.add_client_error(
        "transact_write_items",
        service_error_code="TransactionCanceledException",
        http_status_code=400,
        modeled_fields={"CancellationReasons": [{"Code": c} for c in codes]},
    )


def test_transaction_conflict_is_tried_again_then_succeeds(client):
    sleeps: list[float] = []
    with Stubber(client) as stub:
        cancel(stub, "TransactionConflict", "None")
        stub.add_response("transact_write_items", {})
        transact_write(client, [CHECK], sleep=sleeps.append)
    assert len(sleeps) == 1


def test_condition_failure_is_reported_not_retried(client):
    with Stubber(client) as stub:
        cancel(stub, "ConditionalCheckFailed", "None")
        with pytest.raises(TransactionCancelled) as info:
            transact_write(client, [CHECK], sleep=lambda s: None)
    assert [r["Code"] for r in info.value.reasons] == ["ConditionalCheckFailed", "None"]


def test_backoff_is_bounded_and_capped():
    delays = list(backoff_delays(6, base=1, cap=4))
    assert len(delays) == 5 and all(0 <= d <= 4 for d in delays)


def test_item_size_counts_names_and_values():
    assert item_size({"ab": "xyz"}) == 5
    assert item_size({"m": {"k": "v"}}) == 1 + 3 + 1 + 1 + 1
