"""The race of the TaskManager issue, on DynamoDB Local: 4 threads claim and invoke from the same
500 queued tasks through a real HTTP Lambda endpoint. Every task must be invoked exactly once.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

import pytest

from sosw import aws
from sosw.clock import SystemClock
from sosw.errors import InvokeError
from sosw.local.tables import create_tables, prefixed_config
from sosw.managers.ecology import EcologyManager
from sosw.managers.task import InvokeResult, TaskManager

pytestmark = pytest.mark.integration

TASKS = int(os.environ.get("SOSW_RACE_TASKS", "500"))
#: moto's server copies every table on each transaction (its rollback), so a claim there costs the queue's
#: length: the demo's fallback races over fewer tasks in make test (SOSW_SCALE=full: as many as on DynamoDB Local).
MOTO_TASKS = TASKS if os.environ.get("SOSW_SCALE") == "full" else min(TASKS, 200)
THREADS = 4


@pytest.fixture
def serial_moto(monkeypatch):
    """The demo's fallback DynamoDB (no Java): moto's server, one request at a time."""
    from sosw.local.moto_dynamodb import SerialMotoServer

    with SerialMotoServer() as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", server.endpoint_url)
        yield server


@pytest.fixture(params=["dynamodb-local", "serial-moto"])
def race_config(request, monkeypatch):
    if request.param == "dynamodb-local":
        ddb = request.getfixturevalue("dynamodb_local")
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", ddb.endpoint_url)
    else:
        request.getfixturevalue("serial_moto")
    cfg = prefixed_config(f"race{os.getpid()}_", {})
    create_tables(aws.dynamodb_client(), cfg)
    return cfg


def test_four_racing_orchestrators_invoke_every_task_exactly_once(race_config, request, lambda_endpoint):
    config = race_config
    tasks = MOTO_TASKS if request.node.callspec.params["race_config"] == "serial-moto" else TASKS
    # Given 500 queued tasks of one labourer (200 on the serial moto server, see MOTO_TASKS)
    config = {**config, "labourers": {"alpha": {"max_duration": 60}}}
    seeder = TaskManager(config)
    alpha = seeder.register_labourers()[0]
    ids = seeder.create_tasks(alpha, [{"n": i} for i in range(tasks)])
    outcomes: Counter[str] = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def orchestrator() -> None:
        # Each thread is its own orchestrator: its own TaskManager and clients, the same queue
        try:
            manager = TaskManager(config, clock=SystemClock(), ecology_client=EcologyManager(config))
            labourer = manager.register_labourers()[0]
            barrier.wait()
            while True:
                batch = manager.get_next_for_labourer(labourer, cnt=25)
                if not batch:
                    return
                for task in batch:
                    try:
                        result = manager.invoke_task(labourer, task=task)
                    except InvokeError as exc:
                        result = type(exc).__name__
                    with lock:
                        outcomes[str(result)] += 1
        except BaseException as exc:  # surfaced below, not swallowed
            errors.append(exc)

    threads = [threading.Thread(target=orchestrator) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)

    # Then every task was delivered exactly once, and the rest were skipped claims
    assert errors == []
    delivered = Counter(call.event["task_id"] for call in lambda_endpoint.invocations)
    duplicates = {task_id: n for task_id, n in delivered.items() if n > 1}
    print(f"\nrace: {tasks} tasks, {THREADS} threads, outcomes {dict(outcomes)}, duplicates {len(duplicates)}")
    assert duplicates == {}
    assert set(delivered) == set(ids)
    assert outcomes[str(InvokeResult.INVOKED)] == tasks
    assert all(call.event["attempts"] == 1 for call in lambda_endpoint.invocations)
    assert seeder.get_length_of_queue_for_labourer(alpha) == 0
