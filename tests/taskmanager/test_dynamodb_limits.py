"""DynamoDB's real limits, through the emulation in front of DynamoDB Local (``bench.ddb_limits``).

DynamoDB Local never throttles and never conflicts; DynamoDB does both under load, on the items and keys that
many callers share. Each refusal on the claim, close, count and move paths is retried with backoff within the
caller's time; past that a report raises (Lambda redelivers it), and a run loses a pass, not the labourer.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from sosw.clock import SystemClock
from sosw.managers.ecology import EcologyManager
from sosw.managers.task import TaskManager
from sosw.orchestrator import Orchestrator
from sosw.worker_assistant import WorkerAssistant
from tests.conftest import scan_all
from tests.taskmanager import test_dispatch
from tests.taskmanager.test_dispatch import FOLLOW, occupying, running

#: Workers that complete 0.1 s after their Invoke, reported through the API (the dispatch tests' fixture).
live = test_dispatch.live

pytestmark = [
    pytest.mark.integration,
    # The emulation stands in front of DynamoDB Local: moto's side of the backend has nothing to show here
    pytest.mark.parametrize("backend", [pytest.param("local", marks=pytest.mark.integration)], indirect=True),
]


def countdown(seconds: float):
    """A Lambda's ``remaining`` time: ``seconds`` from now."""
    deadline = time.monotonic() + seconds
    return lambda: deadline - time.monotonic()


def refusals(stats: dict, reason: str) -> int:
    """How many requests the emulation refused for ``reason``, whatever the operation."""
    return sum(reasons.get(reason, 0) for reasons in stats["refused"].values())


def test_a_throttled_claim_is_retried_within_the_run(ddb_limits, live, lambda_endpoint, config):
    # Given 31 queued tasks of alpha (cap 5) and every partition key limited to 1 write unit a second
    make, peaks = live
    manager = make()
    alpha = manager.get_labourer("alpha")
    manager.create_tasks(alpha, [{}] * 31)
    time.sleep(1.01)
    ddb_limits.configure(write_units=1)
    # And a claim through the seed API that has just spent the claim counter's units (a transaction: 2)
    manager.open_run_window()
    manager.mark_task_invoked(alpha, manager.get_next_for_labourer(alpha, 1)[0], cap=5)
    slots = f"{config['sosw_orchestrator_leases_table']}:alpha#slots"
    throttled: list[int] = []

    def lift_once_throttled():  # the load passes: the workers' reports don't have to crawl at 1 unit a second
        deadline = time.monotonic() + 30
        while not throttled and time.monotonic() < deadline:
            throttled.extend(ddb_limits.stats()["refused_partitions"].get(slots, {}).values())
            time.sleep(0.05)
        ddb_limits.configure(write_units=None)

    lifter = threading.Thread(target=lift_once_throttled)
    lifter.start()
    # When one run follows alpha: its first claim comes within the same second
    report = Orchestrator(manager).run(labourer_ids=["alpha"], follow=True)
    lifter.join()
    # Then that claim was throttled, and the same run still invoked every other task, within the cap, no error
    assert ddb_limits.stats()["refused_partitions"][slots]["ThrottlingError"] > 0
    assert report.labourers["alpha"].error == ""
    assert report.labourers["alpha"].outcomes["invoked"] == 30 == len(lambda_endpoint.invocations)
    assert peaks["alpha"] <= 4  # the seed API's claim holds the fifth slot


def test_reports_meeting_conflicts_and_throttles_close_each_task_once(ddb_limits, config):
    # Given 40 invoked tasks of a labourer of cap 1 (one freed shard: every close writes the same counter item)
    cfg = {**config, "labourers": {**config["labourers"], "solo": {"max_simultaneous_invocations": 1}}}
    manager = TaskManager(cfg, clock=SystemClock(), ecology_client=EcologyManager(cfg))
    solo = manager.get_labourer("solo")
    manager.create_tasks(solo, [{"n": i} for i in range(40)])
    time.sleep(1.01)
    manager.open_run_window()
    claimed = manager.claim_tasks(solo, manager.get_next_for_labourer(solo, 40), 40)
    assert len(claimed) == 40
    # When 8 WorkerAssistants report them at once, transactions holding their items 15 ms past the call, and
    # the provisioned leases table taking 10 write units a second per key
    ddb_limits.configure(
        hold_seconds=0.015, write_units=10, billing={cfg["sosw_orchestrator_leases_table"]: "PROVISIONED"}
    )

    def report(task):
        assistant = WorkerAssistant(TaskManager(cfg, clock=SystemClock(), ecology_client=EcologyManager(cfg)))
        event = {"action": "mark_task_as_completed", "task_id": task["task_id"], "attempt": 1, "task": task}
        return assistant.handle(event, remaining=countdown(60))["outcome"]

    with ThreadPoolExecutor(8) as pool:
        outcomes = Counter(pool.map(report, claimed))
    stats = ddb_limits.stats()
    ddb_limits.configure(hold_seconds=0, write_units=None, billing={})
    # Then conflicts and throttles came, and were retried: every report accepted, every task closed once
    assert refusals(stats, "TransactionConflict") > 0
    assert refusals(stats, "ProvisionedThroughputExceeded") > 0
    assert outcomes == {"accepted": 40}
    tables = scan_all(cfg)
    assert Counter(t["task_id"] for t in tables["closed"]) == Counter({t["task_id"]: 1 for t in claimed})
    assert running(manager, "solo") == 0 == occupying(cfg)["solo"]


def test_a_report_that_runs_out_of_time_raises_for_redelivery_and_a_redelivery_closes_it(
    ddb_limits, config, capsys, monkeypatch
):
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    # Given an invoked task whose close DynamoDB keeps refusing (a partition with no write units at all)
    cfg = {**config, "write_retry_attempts": 3}
    manager = TaskManager(cfg, clock=SystemClock(), ecology_client=EcologyManager(cfg))
    alpha = manager.get_labourer("alpha")
    manager.create_tasks(alpha, [{}])
    time.sleep(1.01)
    manager.open_run_window()
    [task] = manager.claim_tasks(alpha, manager.get_next_for_labourer(alpha, 1), 1)
    event = {"action": "mark_task_as_completed", "task_id": task["task_id"], "attempt": 1, "task": task}
    ddb_limits.configure(write_units=0.001)
    # (a write that spends the task's partition's units: another writer of the same key)
    manager.dynamo_db_client.update_item(
        TableName=cfg["dynamo_db_config"]["table_name"],
        Key={"task_id": {"S": task["task_id"]}},
        UpdateExpression="SET noted = :n",
        ExpressionAttributeValues={":n": {"N": "1"}},
    )
    # When the WorkerAssistant handles the report
    with pytest.raises(Exception) as raised:
        WorkerAssistant(manager).handle(event, remaining=countdown(4))
    # Then it raised DynamoDB's refusal (Lambda delivers the event again), wrote nothing, and counted it
    assert "Throttl" in str(raised.value)
    [metric] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "reports_raised" in line]
    assert metric["reports_raised"] == [1.0] and metric["labourer_id"] == "alpha"
    assert occupying(cfg)["alpha"] == 1 and scan_all(cfg)["closed"] == []
    # When the redelivery comes after the load is gone, the task closes, once
    ddb_limits.configure(write_units=None)
    assert WorkerAssistant(manager).handle(event, remaining=countdown(4))["outcome"] == "accepted"
    assert [t["task_id"] for t in scan_all(cfg)["closed"]] == [task["task_id"]]
    assert running(manager, "alpha") == 0


def test_a_counter_read_refused_costs_the_run_one_pass(ddb_limits, live, lambda_endpoint, config):
    # Given queued tasks, and reads limited to almost nothing for the first 1.5 s of the run (no retries)
    _make, _peaks = live
    cfg = {**config, **FOLLOW, "write_retry_attempts": 1}
    manager = TaskManager(cfg, clock=SystemClock(), ecology_client=EcologyManager(cfg))
    beta = manager.get_labourer("beta")  # cap 2
    manager.create_tasks(beta, [{}] * 4)
    time.sleep(1.01)
    ddb_limits.configure(read_units=0.001)
    # (another reader has just spent the units of beta's claim counter: the run's first read of the counters
    # comes back with that key unprocessed, and this config allows no second try)
    manager.dynamo_db_client.get_item(
        TableName=cfg["sosw_orchestrator_leases_table"], Key={"labourer_id": {"S": "beta#slots"}}, ConsistentRead=True
    )
    lifted = threading.Timer(1.5, lambda: ddb_limits.configure(read_units=None))
    lifted.start()
    # When one run follows beta
    report = Orchestrator(manager).run(labourer_ids=["beta"], follow=True)
    lifted.join()
    # Then it lost passes to the refused reads, went on, and invoked every task
    assert report.failed_passes >= 1
    assert report.labourers["beta"].outcomes["invoked"] == 4 and report.labourers["beta"].error == ""


def test_closes_and_two_orchestrators_claiming_keep_the_cap_and_the_counts(ddb_limits, config, lambda_endpoint):
    # Given 120 queued tasks of a labourer of cap 12, transactions holding their items 15 ms past the call
    cfg = {**config, **FOLLOW, "labourers": {**config["labourers"], "busy": {"max_simultaneous_invocations": 12}}}
    seeder = TaskManager(cfg, clock=SystemClock(), ecology_client=EcologyManager(cfg))
    busy = seeder.get_labourer("busy")
    seeder.create_tasks(busy, [{"n": i} for i in range(120)])
    time.sleep(1.01)
    ddb_limits.configure(hold_seconds=0.015)
    lock = threading.Lock()
    in_flight, peak, closes = [0], [0], Counter()

    def work(call):  # each invoked task is closed 50 ms later by one of many reporting threads
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])

        def done():
            with lock:
                in_flight[0] -= 1
            task = {k: call.event[k] for k in ("task_id", "labourer_id", "created_at", "greenfield", "attempts")}
            assistant = WorkerAssistant(TaskManager(cfg, clock=SystemClock(), ecology_client=EcologyManager(cfg)))
            event = {"action": "mark_task_as_completed", "task_id": task["task_id"], "attempt": 1, "task": task}
            outcome = assistant.handle(event, remaining=countdown(60))["outcome"]
            with lock:
                closes[outcome] += 1

        threading.Timer(0.05, done).start()

    lambda_endpoint.respond = work

    def orchestrate():
        manager = TaskManager(cfg, clock=SystemClock(), ecology_client=EcologyManager(cfg))
        # The lease lets one run follow the labourer; the other claims through the seed API meanwhile
        return Orchestrator(manager).run(labourer_ids=["busy"], follow=True)

    def seed_api_claims():
        manager = TaskManager(cfg, clock=SystemClock(), ecology_client=EcologyManager(cfg))
        for _ in range(40):
            manager.open_run_window()
            for task in manager.get_next_for_labourer(busy, 2):
                manager.invoke_task(busy, task=task, cap=12)
            time.sleep(0.05)

    with ThreadPoolExecutor(3) as pool:
        runs = [pool.submit(orchestrate), pool.submit(orchestrate), pool.submit(seed_api_claims)]
        for run in runs:
            run.result(timeout=120)
    deadline = time.time() + 20
    while sum(closes.values()) < 120 and time.time() < deadline:
        time.sleep(0.1)
    stats = ddb_limits.stats()
    # Then every task was invoked once and closed once, the cap never passed, the counts back to 0
    print(f"\nconflicts retried: {refusals(stats, 'TransactionConflict')}")
    assert Counter(c.event["task_id"] for c in lambda_endpoint.invocations).most_common(1)[0][1] == 1
    assert closes == {"accepted": 120}
    assert peak[0] <= 12
    assert running(seeder, "busy") == 0 == occupying(cfg)["busy"]


def test_write_units_a_task_on_the_queues_shared_keys(ddb_limits, config):
    # Given 20 tasks created one by one, claimed, started and completed by a worker's copy (the stack's lifecycle)
    cfg = {**config, "labourers": {**config["labourers"], "wide": {"max_simultaneous_invocations": 20}}}
    manager = TaskManager(cfg, clock=SystemClock(), ecology_client=EcologyManager(cfg))
    wide = manager.get_labourer("wide")
    ddb_limits.configure(write_units=1_000_000)  # a limit no request reaches: every write is accounted
    for i in range(20):
        manager.create_task(wide, n=i)
    time.sleep(1.01)
    manager.open_run_window()
    claimed = manager.claim_tasks(wide, manager.get_next_for_labourer(wide, 20), 20)
    for task in claimed:
        assert manager.mark_task_started(task["task_id"], 1)
        assert manager.complete_and_archive_task(task, attempt=1)
    # When the emulation's write units per partition key are read (AWS's rule)
    units = {key: used.get("write", 0) / 20 for key, used in ddb_limits.stats()["units"].items()}
    tasks_index = next(
        k for k in units if k.startswith(cfg["dynamo_db_config"]["table_name"] + "/") and k.endswith(":wide")
    )
    closed_index = next(
        k for k in units if k.startswith(cfg["sosw_closed_tasks_table"] + "/") and k.endswith(":wide_1")
    )
    leases = cfg["sosw_orchestrator_leases_table"]
    shards = {k: v for k, v in units.items() if k.startswith(f"{leases}:wide#slots#")}
    print(
        f"\nwrite units a task: tasks index {units[tasks_index]}, closed index {units[closed_index]}, "
        f"claims item {units[f'{leases}:wide#slots']}, freed shards {sum(shards.values())} over {len(shards)}"
    )
    # Then they are what the limits page states: the tasks index 5 a task (created 1, claimed 2, started 1,
    # closed 1), the closed index 1, the claims item one transaction for the whole refill, the closes spread
    assert units[tasks_index] == 5 and units[closed_index] == 1
    assert units[f"{leases}:wide#slots"] == 2 / 20
    assert sum(shards.values()) == pytest.approx(2) and max(shards.values()) < 2


def test_a_claim_whose_answer_was_lost_is_not_taken_for_someone_elses(ddb_limits, config):
    # Given 5 queued tasks, and a client whose first answer to a transaction is lost after it was written
    # (botocore then sends the same request again, as after a timeout or a dropped connection)
    manager = TaskManager(config, clock=SystemClock(), ecology_client=EcologyManager(config))
    alpha = manager.get_labourer("alpha")
    manager.create_tasks(alpha, [{}] * 5)
    time.sleep(1.01)
    lost: list[str] = []

    def lose_the_first_answer(attempts: int, response, **_):
        if attempts == 1 and not lost and response and response[1]["ResponseMetadata"]["HTTPStatusCode"] == 200:
            lost.append("answer")
            return 0.01  # retry: the written transaction is sent again
        return None

    sent: list[str] = []
    manager.dynamo_db_client.meta.events.register(
        "before-send.dynamodb.TransactWriteItems", lambda request, **_: sent.append(request.headers.get("X-Amz-Target"))
    )
    manager.dynamo_db_client.meta.events.register_first(
        "needs-retry.dynamodb.TransactWriteItems", lose_the_first_answer
    )
    # When the claim goes out
    manager.open_run_window()
    claimed = manager.claim_tasks(alpha, manager.get_next_for_labourer(alpha, 5), 5)
    # Then the replay is answered as written (botocore gives TransactWriteItems an idempotency token of its own,
    # the same on each of its retries): the 5 tasks are this claim's, to invoke, not skipped as taken
    assert lost == ["answer"] and len(sent) == 2, sent
    assert len(claimed) == 5 and occupying(config)["alpha"] == 5 == running(manager, "alpha")
