"""The few things boto3 doesn't do for us: UnprocessedItems and transaction-conflict backoff."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from sosw.dynamo import (
    TransactionCancelled,
    UnprocessedError,
    backoff_delays,
    batch_write,
    call_with_retries,
    is_transient,
    transact_write,
)
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


# ------------------------------------------------------------------ what DynamoDB answers under load


@pytest.mark.parametrize(
    "code",
    [
        "TransactionConflictException",
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
    ],
)
def test_each_error_of_load_is_retried_then_the_call_passes(client, code):
    sleeps: list[float] = []
    with Stubber(client) as stub:
        stub.add_client_error("get_item", service_error_code=code, http_status_code=400)
        stub.add_response("get_item", {"Item": {"k": {"S": "v"}}})
        answer = call_with_retries(lambda: client.get_item(TableName="t", Key={"k": {"S": "v"}}), sleep=sleeps.append)
    assert answer["Item"] == {"k": {"S": "v"}} and len(sleeps) == 1


@pytest.mark.parametrize("reason", ["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"])
def test_each_cancellation_of_load_is_retried_then_the_transaction_passes(client, reason):
    sleeps: list[float] = []
    with Stubber(client) as stub:
        stub.add_client_error(
            "transact_write_items",
            service_error_code="TransactionCanceledException",
            http_status_code=400,
            response_meta={},
            modeled_fields={"CancellationReasons": [{"Code": "None"}, {"Code": reason}]},
        )
        stub.add_response("transact_write_items", {})
        transact_write(client, [_update()], sleep=sleeps.append)
    assert len(sleeps) == 1


def test_a_condition_failure_or_a_bad_request_is_not_retried(client):
    with Stubber(client) as stub:
        stub.add_client_error("get_item", service_error_code="ValidationException", http_status_code=400)
        with pytest.raises(ClientError):
            call_with_retries(lambda: client.get_item(TableName="t", Key={"k": {"S": "v"}}), sleep=pytest.fail)


def test_retries_stop_before_the_callers_time_runs_out(client):
    # Given a caller with 1.5 s left and a DynamoDB that keeps throttling
    clock = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += seconds

    with Stubber(client) as stub:
        for _ in range(200):
            stub.add_client_error("get_item", service_error_code="ThrottlingException", http_status_code=400)
        deadline = clock[0] + 1.5
        # When it calls with its time left (and no bound on the attempts but that time)
        with pytest.raises(ClientError):
            call_with_retries(
                lambda: client.get_item(TableName="t", Key={"k": {"S": "v"}}),
                attempts=2,
                base=0.05,
                cap=0.2,
                remaining=lambda: deadline - clock[0],
                sleep=sleep,
            )
    # Then it tried for as long as its time allowed, never into its last second
    assert len(sleeps) > 1 and clock[0] <= deadline - 1.0 + 1e-9


def test_transient_or_not():
    assert is_transient(UnprocessedError("left keys"))
    assert not is_transient(RuntimeError("other"))
    assert not is_transient(ClientError({"Error": {"Code": "ConditionalCheckFailedException"}}, "UpdateItem"))


def _update() -> dict:
    return {
        "Update": {
            "TableName": "t",
            "Key": {"k": {"S": "v"}},
            "UpdateExpression": "SET a = :a",
            "ExpressionAttributeValues": {":a": {"N": "1"}},
        }
    }
