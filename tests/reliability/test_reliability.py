"""Nothing lost, nothing run twice: races, crashes, DynamoDB faults, Lambda faults, stale index reads.

The races run through the emulation of DynamoDB's limits (``bench.ddb_limits``): DynamoDB Local alone never
makes two transactions on one item conflict, DynamoDB does.

Each scenario prints one line of figures (``pytest -s`` shows them) and asserts them. ``SOSW_SCALE=full``
runs the scale quoted in docs/reliability.md; CI runs the ``ci`` scale.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from typing import Any

import pytest

from sosw.managers.task import TaskManager
from sosw.orchestrator import Orchestrator
from sosw.scavenger import Scavenger
from tests.reliability.harness import (
    SCALE,
    DynamoFaults,
    SimulatedWorkers,
    StaleIndexReads,
    check,
    fate,
    loop_process,
    scaled,
    scan,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("backend", ["local"], indirect=True)]

FAST = {"duration": 2, "cooldown": 1, "max_duration": 1, "retry_policy": "exponential", "retry_base": 1, "retry_cap": 2}


def with_labourers(config: dict[str, Any], labourers: dict[str, dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {**config, "labourers": labourers, "orchestrator_lease_settle_seconds": 0.2, **extra}


def create(config: dict[str, Any], per_labourer: dict[str, int]) -> list[str]:
    tm = TaskManager(config)
    ids: list[str] = []
    for labourer_id, n in per_labourer.items():
        ids += tm.create_tasks(tm.get_labourer(labourer_id), [{"n": i} for i in range(n)])
    return ids


def all_closed(config: dict[str, Any]) -> bool:
    tables = scan(config)
    return not tables["tasks"] and not tables["retry"]


def environment(workers: SimulatedWorkers) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL_LAMBDA=workers.url, POWERTOOLS_METRICS_DISABLED="true", POWERTOOLS_LOG_LEVEL="ERROR")
    return env


def start(
    kind: str, config: dict[str, Any], env: dict[str, str], seconds: float, crash_at_call: int | None = None
) -> multiprocessing.Process:
    process = multiprocessing.get_context("spawn").Process(
        target=loop_process, args=(kind, config, env, seconds, crash_at_call), daemon=True
    )
    process.start()
    return process


def stop(processes: list[multiprocessing.Process]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(10)


def test_races_four_orchestrators_two_scavengers(config, ddb_limits, monkeypatch):
    # Given tasks on three labourers, 10% failing their first attempt and 2% always failing, and DynamoDB's
    # item conflicts between transactions (items held for the call; at full scale, 15 ms more, as on AWS)
    ddb_limits.configure(hold_seconds=0.015 if SCALE == "full" else 0.0)
    labourers = {
        "wide": {**FAST, "max_simultaneous_invocations": 20, "duration": 60},
        "mid": {**FAST, "max_simultaneous_invocations": 10, "duration": 60},
        "thin": {**FAST, "max_simultaneous_invocations": 4, "duration": 60},
    }
    config = with_labourers(config, labourers)
    n = scaled(600, 5000)
    ids = create(config, {"wide": n // 2, "mid": n * 3 // 10, "thin": n - n // 2 - n * 3 // 10})
    workers = SimulatedWorkers(config, first_fail=0.10, always_fail=0.02, work_seconds=0.02)
    env = environment(workers)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", workers.url)
    started = time.monotonic()
    # When 4 orchestrator and 2 scavenger processes run at once until every task is closed
    processes = [start("orchestrator", config, env, 900) for _ in range(4)]
    processes += [start("scavenger", config, env, 900) for _ in range(2)]
    try:
        done = wait_until(lambda: all_closed(config), scaled(240, 1200), pause=1)
    finally:
        stop(processes)
        workers.close()
    elapsed = time.monotonic() - started
    # Then: exactly once, everywhere
    figures = check(config, ids, workers.invocations, workers.peaks)
    always = sum(fate(t, 0.10, 0.02) == "always_fail" for t in ids)
    refused = ddb_limits.stats()["refused"]
    print(
        "\n"
        + figures.line(
            "races",
            f"invocations={len(workers.invocations)} peaks={dict(workers.peaks)} seconds={elapsed:.0f} "
            f"emulation_refused={refused}",
        )
    )
    assert done, "tasks still open"
    figures.assert_clean()
    assert figures.dead == always


def test_crashes_kill_9_at_every_call_of_a_scavenger_run(config, monkeypatch):
    # Given tasks on one labourer whose workers sometimes fail
    config = with_labourers(config, {"solo": {**FAST, "max_simultaneous_invocations": 15}})
    ids = create(config, {"solo": scaled(150, 1500)})
    workers = SimulatedWorkers(config, first_fail=0.2, always_fail=0.05, work_seconds=0.02)
    env = environment(workers)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", workers.url)
    kills = 0
    try:
        # When scavengers are killed with SIGKILL at their k-th AWS call, for every k of a run, while
        # orchestrators are killed at seeded points too, and fresh processes keep going
        for k in range(1, scaled(24, 60)):
            runners = [
                start("orchestrator", config, env, 2.0, crash_at_call=3 + (k * 7) % 11),
                start("scavenger", config, env, 2.0, crash_at_call=k),
            ]
            for process in runners:
                process.join(30)
                kills += process.exitcode == -9
        survivors = [start("orchestrator", config, env, 900), start("scavenger", config, env, 900)]
        try:
            done = wait_until(lambda: all_closed(config), scaled(180, 900), pause=1)
        finally:
            stop(survivors)
    finally:
        workers.close()
    figures = check(config, ids, workers.invocations, workers.peaks)
    print("\n" + figures.line("crashes", f"kills={kills}"))
    assert kills >= 30
    assert done, "tasks still open"
    figures.assert_clean()


def run_threads(
    config: dict[str, Any], kinds: list[str], until: float, install: Any = None
) -> tuple[list[BaseException | str], list[TaskManager]]:
    """Orchestrator and Scavenger loops in threads. An exception escaping a run is an error, and so is
    a labourer's run that failed inside (recorded in the run's report)."""
    errors: list[BaseException | str] = []
    managers: list[TaskManager] = []
    stop_event = threading.Event()

    def loop(kind: str) -> None:
        try:
            while not stop_event.is_set():
                tm = TaskManager(config)
                if install:
                    install(tm.dynamo_db_client)
                managers.append(tm)
                if kind == "orchestrator":
                    # Runs that follow the work (continuous dispatch) until there is none, or until stopped
                    safety = float(tm.config.get("orchestrator_safety_seconds", 5))

                    def remaining(safety: float = safety) -> float:
                        return 0.0 if stop_event.is_set() else safety + 60.0

                    report = Orchestrator(tm).run(remaining, follow=True)
                    errors.extend(f"{k}: {v.error}" for k, v in report.labourers.items() if v.error)
                else:
                    errors.extend(f"{k}: {v}" for k, v in Scavenger(tm).run().errors.items())
                time.sleep(0.05)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(kind,)) for kind in kinds]
    for thread in threads:
        thread.start()
    wait_until(lambda: all_closed(config) or bool(errors), until, pause=0.5)
    stop_event.set()
    for thread in threads:
        thread.join(60)
    return errors, managers


def test_dynamodb_faults_throttling_5xx_conflicts_and_unprocessed_items(config, monkeypatch):
    config = with_labourers(config, {"solo": {**FAST, "max_simultaneous_invocations": 15}})
    faults = DynamoFaults(rate=0.1)
    # Bulk creation itself meets UnprocessedItems and throttling
    creator = TaskManager(config)
    faults.install(creator.dynamo_db_client)
    ids = creator.create_tasks(creator.get_labourer("solo"), [{"n": i} for i in range(scaled(200, 2000))])
    workers = SimulatedWorkers(config, first_fail=0.1, always_fail=0.02, work_seconds=0.01)
    faults.install(workers._tm.dynamo_db_client)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", workers.url)
    try:
        errors, _managers = run_threads(
            config, ["orchestrator", "orchestrator", "scavenger"], scaled(180, 900), install=faults.install
        )
    finally:
        workers.close()
    figures = check(config, ids, workers.invocations, workers.peaks)
    print(
        "\n"
        + figures.line(
            "dynamodb faults", f"injected={dict(faults.injected)} max_attempts_of_one_call={faults.max_attempts_seen}"
        )
    )
    assert errors == []
    assert sum(faults.injected.values()) > 50 and faults.injected["UnprocessedItems"] > 0
    assert faults.injected["TransactionConflict"] > 0
    assert 1 < faults.max_attempts_seen <= 6  # retried, and bounded: DYNAMODB_CONFIG's 6 attempts at most
    figures.assert_clean()


def test_lambda_faults_release_the_claim_and_nothing_waits_for_expiry(config, monkeypatch):
    # Expiry is 10 minutes away: a task stuck invoked after a refused Invoke would not finish in time
    config = with_labourers(
        config, {"solo": {**FAST, "max_simultaneous_invocations": 10, "duration": 540, "cooldown": 60}}
    )
    ids = create(config, {"solo": scaled(200, 2000)})
    workers = SimulatedWorkers(config, first_fail=0.0, always_fail=0.0, work_seconds=0.01, refuse=0.3)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", workers.url)
    started = time.monotonic()
    try:
        errors, managers = run_threads(config, ["orchestrator", "scavenger"], scaled(120, 600))
    finally:
        workers.close()
    figures = check(config, ids, workers.invocations, workers.peaks)
    released = sum(tm.stats["invocations_rejected"] for tm in managers)
    print(
        "\n"
        + figures.line(
            "lambda faults", f"refused={workers.refused} released={released} seconds={time.monotonic() - started:.0f}"
        )
    )
    assert errors == [] and workers.refused > 0 and released == workers.refused
    figures.assert_clean()
    assert figures.dead == 0  # a refused Invoke never costs an attempt


def test_stale_index_reads_cause_no_second_invocation(config, monkeypatch):
    config = with_labourers(config, {"solo": {**FAST, "max_simultaneous_invocations": 12}})
    ids = create(config, {"solo": scaled(200, 2000)})
    workers = SimulatedWorkers(config, first_fail=0.1, always_fail=0.0, work_seconds=0.01)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", workers.url)
    stale = StaleIndexReads(index=TaskManager(config).config["dynamo_db_config"]["index_greenfield"], rate=0.5)
    try:
        errors, managers = run_threads(
            config, ["orchestrator", "orchestrator", "scavenger"], scaled(180, 900), install=stale.install
        )
    finally:
        workers.close()
    figures = check(config, ids, workers.invocations, workers.peaks)
    skipped = sum(tm.stats["concurrent_task_invocations_skipped"] + tm.stats["moves_skipped"] for tm in managers)
    print("\n" + figures.line("stale index reads", f"replayed={stale.replayed} conditional_failures={skipped}"))
    assert errors == [] and stale.replayed > 0 and skipped > 0
    figures.assert_clean()
