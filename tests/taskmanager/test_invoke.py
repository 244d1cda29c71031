"""invoke_task through a real HTTP Lambda endpoint on loopback (boto3 reaches it via AWS_ENDPOINT_URL_LAMBDA)."""

from __future__ import annotations

import json

import pytest

from sosw.errors import InvalidInputError, InvokeRejectedError, InvokeUncertainError
from sosw.managers.task import InvokeResult
from tests.conftest import scan_all


@pytest.fixture
def alpha(manager, lambda_endpoint):
    return manager.register_labourers()[0]


def test_invoke_task_delivers_payload_merged_with_task_fields(manager, alpha, lambda_endpoint):
    task = manager.create_task(alpha, payload={"image": "cat.png"}, size=3)
    assert manager.invoke_task(alpha, task_id=task["task_id"]) is InvokeResult.INVOKED
    [call] = lambda_endpoint.invocations
    assert call.function == "alpha" and call.invocation_type == "Event"
    assert call.event["image"] == "cat.png" and call.event["size"] == 3
    assert call.event["task_id"] == task["task_id"] and call.event["attempts"] == 1
    assert call.event["labourer_id"] == "alpha"


def test_invoke_task_skips_an_already_claimed_task_without_error(manager, alpha, lambda_endpoint):
    task = manager.create_task(alpha, payload={})
    assert manager.invoke_task(alpha, task=task) is InvokeResult.INVOKED
    assert manager.invoke_task(alpha, task=task) is InvokeResult.SKIPPED
    assert len(lambda_endpoint.invocations) == 1
    assert manager.stats["concurrent_task_invocations_skipped"] == 1


def test_invoke_task_sends_the_stored_task_not_the_callers_copy(manager, alpha, lambda_endpoint):
    task = manager.create_task(alpha, payload={"safe": True})
    injected = {**task, "payload": json.dumps({"safe": False, "rm": "-rf"})}
    manager.invoke_task(alpha, task=injected)
    assert lambda_endpoint.invocations[0].event["safe"] is True
    assert "rm" not in lambda_endpoint.invocations[0].event


def test_invoke_task_argument_errors(manager, alpha):
    task = manager.create_task(alpha, payload={})
    with pytest.raises(InvalidInputError, match="exactly one"):
        manager.invoke_task(alpha)
    with pytest.raises(InvalidInputError, match="exactly one"):
        manager.invoke_task(alpha, task_id=task["task_id"], task=task)
    # an id no table holds is refused, naming task_id (sosw raises a ValueError too; docs/sosw-differences.md)
    with pytest.raises(InvalidInputError, match="task_id"):
        manager.invoke_task(alpha, task_id="missing")
    # a task that is not open any more (closed or moved by someone else meanwhile) is skipped, as the seed says
    assert manager.cancel_task(task["task_id"])
    assert manager.invoke_task(alpha, task_id=task["task_id"]) is InvokeResult.SKIPPED


@pytest.mark.parametrize(("status", "code"), [(429, "TooManyRequestsException"), (404, "ResourceNotFoundException")])
def test_refused_invoke_releases_the_claim_to_the_head_of_the_queue(manager, alpha, lambda_endpoint, status, code):
    # Given two queued tasks, and Lambda refusing the first Invoke
    first, second = manager.create_task(alpha, payload={}), manager.create_task(alpha, payload={})
    lambda_endpoint.respond = lambda call: (status, code) if call.event["task_id"] == first["task_id"] else None
    # When the first is invoked
    with pytest.raises(InvokeRejectedError) as info:
        manager.invoke_task(alpha, task=first)
    # Then nothing was delivered, the claim is released, the attempt not counted, and it is first in line
    assert info.value.released is True and code in str(info.value)
    assert lambda_endpoint.invocations == []
    head = manager.get_next_for_labourer(alpha, 2)
    assert [t["task_id"] for t in head] == [first["task_id"], second["task_id"]]
    assert head[0]["attempts"] == 0
    # And a later round invokes it normally
    lambda_endpoint.respond = None
    assert manager.invoke_task(alpha, task=head[0]) is InvokeResult.INVOKED
    assert lambda_endpoint.invocations[0].event["attempts"] == 1


def test_server_error_keeps_the_task_invoked_for_the_expiry_path(manager, alpha, lambda_endpoint, config):
    task = manager.create_task(alpha, payload={})
    lambda_endpoint.respond = lambda call: (500, "ServiceException")
    with pytest.raises(InvokeUncertainError) as info:
        manager.invoke_task(alpha, task=task)
    assert info.value.released is False
    assert len(lambda_endpoint.refused) == 1  # exactly one request: botocore did not retry
    stored = scan_all(config)["tasks"][0]
    assert stored["attempts"] == 1 and stored["greenfield"] > manager.clock.now()


def test_invoke_to_an_unreachable_endpoint_releases_the_claim(manager, alpha, monkeypatch):
    from sosw.local.dynamodb_local import free_port

    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", f"http://127.0.0.1:{free_port()}")
    task = manager.create_task(alpha, payload={})
    with pytest.raises(InvokeRejectedError):
        manager.invoke_task(alpha, task=task)
    assert manager.get_task_by_id(task["task_id"])["attempts"] == 0


def test_max_duration_is_read_from_the_lambda_timeout(make_manager, lambda_endpoint, config):
    lambda_endpoint.timeout_seconds = 123
    manager = make_manager(labourers={"gamma": {}})
    [gamma] = manager.register_labourers()
    assert gamma.max_duration == 123
