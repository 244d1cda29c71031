"""sosw's hooks, overridden as sosw users override them, change what the run does (as in sosw).

Written the way sosw's own tests are: rows put straight into tables made from sosw's definitions (DynamoDB
Local), the processors built from ``custom_config``, clients replaced with ``MagicMock``.
"""

from __future__ import annotations

import json
import time
from typing import Any
from unittest.mock import MagicMock

import pytest

from sosw.labourer import Labourer
from sosw.managers.ecology import EcologyManager
from sosw.managers.task import TaskManager
from sosw.orchestrator import Orchestrator
from sosw.scavenger import Scavenger
from sosw.worker import Worker
from tests.dropin.differences import declared
from tests.dropin.differential import DELTA, queued, rows, seed

pytestmark = pytest.mark.integration


def failed(task_id: str, labourer_id: str, attempts: int = 1) -> dict[str, Any]:
    """A task whose current attempt was invoked a minute ago and reported failed."""
    now = int(time.time())
    return {
        **queued(task_id, labourer_id, now - 60 + DELTA),
        "attempts": attempts,
        "failed_at": now - 5,
        "last_error": {"type": "IOError", "message": "disk"},
    }


def scavenger_of(cls: type[Scavenger], config: dict[str, Any]) -> Scavenger:
    scavenger = cls(custom_config={"task_config": config})
    scavenger.sns_client = MagicMock()
    return scavenger


# ------------------------------------------------------------------ the Scavenger's hooks


def test_should_retry_task_decides_between_the_retry_table_and_closing_dead(sosw_config):
    # Given two failed tasks of alpha, each with attempts left (max_attempts 3)
    seed(sosw_config, {"tasks": [failed("kept", "alpha"), failed("dropped", "alpha")]})

    class OnlyKept(Scavenger):
        def should_retry_task(self, labourer: Labourer, task: dict[str, Any]) -> bool:
            return task["task_id"] == "kept"

    # When a Scavenger whose should_retry_task says no to one of them runs
    scavenger_of(OnlyKept, sosw_config)({})
    # Then that one is closed dead, the other waits for its retry
    left = rows(sosw_config)
    assert set(left["retry"]) == {"kept"}
    assert left["closed"]["dropped"]["labourer_id_task_status"] == "alpha_0" and left["tasks"] == {}


def test_calculate_delay_for_task_retry_sets_the_wait(sosw_config):
    # Given a failed task of alpha (max_duration 60: sosw's delay would be 60 x 1)
    seed(sosw_config, {"tasks": [failed("t1", "alpha")]})

    class TwoMinutes(Scavenger):
        def calculate_delay_for_task_retry(self, labourer: Labourer, task: dict[str, Any]) -> int:
            return 120

    # When the overriding Scavenger runs
    before = time.time()
    scavenger_of(TwoMinutes, sosw_config)({})
    # Then the task waits the hook's delay
    waiting = rows(sosw_config)["retry"]["t1"]
    assert before + 120 - 1 <= waiting["desired_launch_time"] <= time.time() + 120


def test_a_delay_past_the_limit_from_the_hook_is_refused_and_nothing_moves(sosw_config):
    # Given a failed task, and a hook that answers in milliseconds by mistake
    seed(sosw_config, {"tasks": [failed("t1", "alpha")]})

    class Milliseconds(Scavenger):
        def calculate_delay_for_task_retry(self, labourer: Labourer, task: dict[str, Any]) -> int:
            return 120_000_000_000

    scavenger = scavenger_of(Milliseconds, sosw_config)
    # When it runs
    scavenger({})
    # Then the move was refused naming the field and the limit, and the task is where it was
    error = scavenger.last_report.errors["alpha"]
    assert "wanted_delay" in error and "max_delay_seconds" in error, declared("delay-limit")
    left = rows(sosw_config)
    assert set(left["tasks"]) == {"t1"} and left["retry"] == {} and left["closed"] == {}


# ------------------------------------------------------------------ the Orchestrator's hook


def orchestrator_of(cls: type[Orchestrator], config: dict[str, Any]) -> tuple[Orchestrator, MagicMock]:
    orchestrator = cls(custom_config={"task_config": config})
    lambda_client = MagicMock(**{"invoke.return_value": {"StatusCode": 202}})
    orchestrator.task_client.lambda_client = lambda_client
    return orchestrator, lambda_client


def test_get_desired_invocation_number_for_labourer_sets_how_many_start(sosw_config):
    # Given three queued tasks of alpha (cap 5)
    seed(sosw_config, {"tasks": [queued(f"q{i}", "alpha", 1000 * (i + 1)) for i in range(3)]})

    class OneAtATime(Orchestrator):
        def get_desired_invocation_number_for_labourer(self, labourer: Labourer) -> int:
            return 1 if labourer.id == "alpha" else 0

    orchestrator, lambda_client = orchestrator_of(OneAtATime, sosw_config)
    # When the overriding Orchestrator runs once
    orchestrator({})
    # Then one task was invoked: the head of the queue
    assert [json.loads(c.kwargs["Payload"])["task_id"] for c in lambda_client.invoke.call_args_list] == ["q0"]
    assert orchestrator.task_client.get_task_by_id("q0")["attempts"] == 1


def test_an_override_asking_past_the_cap_gets_the_cap(sosw_config):
    # Given eight queued tasks of alpha (cap 5)
    seed(sosw_config, {"tasks": [queued(f"q{i}", "alpha", 1000 * (i + 1)) for i in range(8)]})

    class Greedy(Orchestrator):
        def get_desired_invocation_number_for_labourer(self, labourer: Labourer) -> int:
            return 100

    orchestrator, lambda_client = orchestrator_of(Greedy, sosw_config)
    # When it runs once
    orchestrator({})
    # Then the cap held: five invoked
    assert lambda_client.invoke.call_count == 5, declared("desired-within-cap")


def test_the_default_desired_number_is_the_cap_less_those_running(sosw_config):
    # Given alpha (cap 5) with two tasks claimed by a run
    seed(sosw_config, {"tasks": [queued(f"q{i}", "alpha", 1000 * (i + 1)) for i in range(2)]})
    orchestrator, _ = orchestrator_of(Orchestrator, sosw_config)
    orchestrator({})
    alpha = orchestrator.task_client.get_labourer("alpha")
    # Then the hook, called alone as sosw users' tests call it, answers 5 - 2
    assert orchestrator.get_desired_invocation_number_for_labourer(alpha) == 3


# ------------------------------------------------------------------ the Worker's hook


def test_a_sosw_worker_reports_completed_through_its_mark_task_as_completed():
    # Given sosw's Worker test idiom
    worker = Worker()
    worker.mark_task_as_completed = MagicMock(return_value=None)
    # When called with an event that has a task id
    worker({"task_id": "123"})
    # Then the hook was called with it
    worker.mark_task_as_completed.assert_called_once_with("123")


def test_a_worker_overriding_mark_task_as_completed_changes_what_is_reported():
    # Given a worker whose completions are sent elsewhere, and the WorkerAssistant answering the start guard
    sent: list[str] = []

    class Elsewhere(Worker):
        def process(self, payload: dict[str, Any]) -> Any:
            return {"doubled": payload["n"] * 2}

        def mark_task_as_completed(self, task_id: str) -> None:
            sent.append(task_id)

    body = MagicMock(**{"read.return_value": json.dumps({"outcome": "accepted"}).encode()})
    lambda_client = MagicMock(**{"invoke.return_value": {"StatusCode": 200, "Payload": body}})
    worker = Elsewhere(lambda_client=lambda_client)
    # When its handler runs a task
    assert worker.handler({"task_id": "t1", "attempts": 1, "labourer_id": "alpha", "n": 2})["status"] == "completed"
    # Then the override got the completion, and the WorkerAssistant only the start guard
    assert sent == ["t1"]
    actions = [json.loads(c.kwargs["Payload"])["action"] for c in lambda_client.invoke.call_args_list]
    assert actions == ["start_task"]


def test_the_default_hook_sends_the_result_and_the_attempt():
    body = MagicMock(**{"read.return_value": json.dumps({"outcome": "accepted"}).encode()})
    lambda_client = MagicMock(**{"invoke.return_value": {"StatusCode": 200, "Payload": body}})

    class Doubler(Worker):
        def process(self, payload: dict[str, Any]) -> Any:
            return {"doubled": payload["n"] * 2}

    Doubler(lambda_client=lambda_client).handler({"task_id": "t1", "attempts": 1, "labourer_id": "alpha", "n": 2})
    report = json.loads(lambda_client.invoke.call_args_list[-1].kwargs["Payload"])
    assert report["action"] == "mark_task_as_completed" and report["attempt"] == 1
    assert report["result"] == {"doubled": 4} and report["task"]["task_id"] == "t1"


# ------------------------------------------------------------------ the EcologyManager's name


def test_get_max_labourer_duration_is_the_name_consulted(sosw_config):
    # Given an EcologyManager that answers sosw's name, and a labourer without max_duration
    class FixedTimeout(EcologyManager):
        def get_max_labourer_duration(self, labourer: Labourer) -> int:
            return 77

    config = {**sosw_config, "labourers": {"delta": {"duration": 30}}}
    tm = TaskManager(config, ecology_client=FixedTimeout(config))
    # When the labourers are registered, and a failed attempt's retry delay is computed
    (delta,) = tm.register_labourers()
    # Then the override was consulted for both
    assert delta.max_duration == 77
    scavenger = Scavenger(tm)
    assert scavenger.calculate_delay_for_task_retry(delta, {"task_id": "x", "attempts": 2}) == 154
    assert tm.ecology_client.get_labourer_max_duration(delta) == 77  # the older name calls sosw's
