"""Continuous dispatch: exact slot counters, and a run that follows the work (refills, due retries, wake flags).

Tests prove cause, not speed: figures belong to `make bench`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from sosw.clock import SystemClock
from sosw.errors import InvokeRejectedError, NoFreeSlotError
from sosw.leases import LeaseStore
from sosw.managers.ecology import EcologyManager
from sosw.managers.task import InvokeResult, TaskManager
from sosw.orchestrator import Orchestrator
from sosw.scavenger import Scavenger
from sosw.tasks.slots import counter_key
from tests.conftest import scan_all

FOLLOW = {
    "orchestrator_lease_settle_seconds": 0,
    "dispatch_poll_seconds": 0.05,
    "dispatch_poll_max_seconds": 0.2,
    "dispatch_wait_seconds": 2,
    "dispatch_linger_seconds": 10,
}


def running(manager: TaskManager, labourer_id: str) -> int:
    return manager.get_running_counts([manager.get_labourer(labourer_id)])[labourer_id]


def set_counter(manager: TaskManager, labourer_id: str, value: int) -> None:
    """Write a labourer's slot counter directly (a state no claim or close of this version leaves)."""
    manager.dynamo_db_client.put_item(
        TableName=manager.config["sosw_orchestrator_leases_table"],
        Item={"labourer_id": {"S": counter_key(labourer_id)["labourer_id"]}, "running": {"N": str(value)}},
    )


def occupying(config) -> Counter[str]:
    """The truth the counters must equal: invoked, unreported tasks per labourer (read from the table)."""
    now = time.time()
    return Counter(
        t["labourer_id"]
        for t in scan_all(config)["tasks"]
        if t["greenfield"] > now and "completed_at" not in t and "failed_at" not in t
    )


# ------------------------------------------------------------------ the counters


def test_every_claim_and_every_way_out_of_a_slot_moves_the_counter_once(make_manager, lambda_endpoint, clock):
    # Given five queued tasks of alpha, claimed
    manager = make_manager()
    alpha = manager.get_labourer("alpha")
    manager.create_tasks(alpha, [{"n": i} for i in range(5)])
    clock.advance(1)
    claimed = manager.claim_tasks(alpha, manager.get_next_for_labourer(alpha, 5), cap=5)
    assert len(claimed) == 5 and running(manager, "alpha") == 5
    a, b, c, d, _e = claimed
    # When each leaves its slot a different way, twice where a repeat could happen
    assert manager.complete_and_archive_task(a, attempt=1)
    assert not manager.complete_and_archive_task(a, attempt=1)
    assert manager.mark_task_completed(b["task_id"], attempt=1)  # sosw-style: the labourer is read first
    assert not manager.mark_task_completed(b["task_id"], attempt=1)
    assert manager.mark_task_failed(c["task_id"], attempt=1, labourer_id="alpha")
    assert manager.archive_task(manager.get_task_by_id(b["task_id"]), completed=True)  # already freed: no change
    lambda_endpoint.respond = lambda call: (429, "TooManyRequestsException")
    with pytest.raises(InvokeRejectedError) as refused:
        manager.invoke_claimed_task(alpha, d)  # refused: the claim and its slot are released
    assert refused.value.released
    # Then the counter is what the table says, each time
    assert running(manager, "alpha") == 1 == occupying(manager.config)["alpha"]
    # And an expired task frees its slot when the Scavenger moves it, once
    clock.advance(alpha.duration + alpha.cooldown + 1)
    assert Scavenger(make_manager()).run().total("retried") == 2  # e expired, c failed
    assert running(manager, "alpha") == 0 == occupying(manager.config)["alpha"]
    assert Scavenger(make_manager()).run().total("retried") == 0


def test_a_claim_beyond_the_cap_is_refused_and_writes_nothing(make_manager, clock):
    manager = make_manager()
    alpha = manager.get_labourer("alpha")
    manager.create_tasks(alpha, [{}] * 3)
    clock.advance(1)
    first, second, third = manager.get_next_for_labourer(alpha, 3)
    manager.mark_task_invoked(alpha, first, cap=2)
    manager.mark_task_invoked(alpha, second, cap=2)
    before = scan_all(manager.config)
    with pytest.raises(NoFreeSlotError) as refused:
        manager.mark_task_invoked(alpha, third, cap=2)
    assert refused.value.cap == 2 and isinstance(refused.value, RuntimeError)
    assert scan_all(manager.config) == before
    assert manager.invoke_task(alpha, task=third, cap=2) is InvokeResult.NO_SLOT


def test_a_counter_driven_below_zero_never_lets_the_cap_be_passed(make_manager, clock):
    # Given a counter below zero: tasks claimed before the counters existed (an upgrade) closed since
    manager = make_manager()
    alpha = manager.get_labourer("alpha")
    set_counter(manager, "alpha", -3)
    manager.create_tasks(alpha, [{}] * 6)
    clock.advance(1)
    # When the running counts are read (every Orchestrator pass does) and a claim of 6 is made with a cap of 2
    assert running(manager, "alpha") == 0
    claimed = manager.claim_tasks(alpha, manager.get_next_for_labourer(alpha, 6), cap=2)
    # Then only 2 are claimed, and the counter says 2
    assert len(claimed) == 2 and occupying(manager.config)["alpha"] == 2 == running(manager, "alpha")


def test_a_claim_on_a_counter_below_zero_sets_it_right_first_and_keeps_the_cap(make_manager, clock):
    # Given a counter below zero, and a process that has not read the counters yet
    manager = make_manager()
    alpha = manager.get_labourer("alpha")
    set_counter(manager, "alpha", -1)
    manager.create_tasks(alpha, [{}] * 3)
    clock.advance(1)
    first, second, third = manager.get_next_for_labourer(alpha, 3)
    # When it claims with a cap of 2: the claim reads (and repairs) the counters before it conditions on them
    manager.mark_task_invoked(alpha, first, cap=2)
    manager.mark_task_invoked(alpha, second, cap=2)
    # Then the third is refused: the -1 was not taken as a free slot
    with pytest.raises(NoFreeSlotError):
        manager.mark_task_invoked(alpha, third, cap=2)
    assert occupying(manager.config)["alpha"] == 2 == running(manager, "alpha")


def test_claiming_together_stops_at_the_cap_and_skips_what_others_took(make_manager, clock):
    manager = make_manager()
    alpha = manager.get_labourer("alpha")
    manager.create_tasks(alpha, [{}] * 6)
    clock.advance(1)
    tasks = manager.get_next_for_labourer(alpha, 6)
    manager.mark_task_invoked(alpha, tasks[0])  # taken by someone else since the read (one slot)
    claimed = manager.claim_tasks(alpha, tasks, cap=4)
    assert len(claimed) == 3 and tasks[0]["task_id"] not in {t["task_id"] for t in claimed}
    assert running(manager, "alpha") == 4 == occupying(manager.config)["alpha"]
    # The claimed copies are the tasks as stored
    for task in claimed:
        stored = manager.get_task_by_id(task["task_id"])
        assert {k: stored[k] for k in task} == task and set(stored) - set(task) <= {"claim_token"}


# ------------------------------------------------------------------ a run that follows the work


@pytest.fixture
def live(config, lambda_endpoint):
    """A real-time TaskManager factory whose "workers" complete after 0.1 s (reported through the API)."""
    cfg = {**config, **FOLLOW}
    timers: list[threading.Timer] = []
    in_flight: Counter[str] = Counter()
    peaks: Counter[str] = Counter()
    lock = threading.Lock()

    def make() -> TaskManager:
        return TaskManager(cfg, clock=SystemClock(), ecology_client=EcologyManager(cfg))

    reporter = make()

    def work(call):
        event = call.event
        with lock:
            in_flight[call.function] += 1
            peaks[call.function] = max(peaks[call.function], in_flight[call.function])

        def done():
            with lock:
                in_flight[call.function] -= 1
            reporter.mark_task_completed(event["task_id"], attempt=event["attempts"], labourer_id=call.function)

        timer = threading.Timer(0.1, done)
        timers.append(timer)
        timer.start()

    lambda_endpoint.respond = lambda call: work(call)
    yield make, peaks
    for timer in timers:
        timer.join()


def test_a_freed_slot_is_refilled_by_the_run_that_follows(live, lambda_endpoint):
    make, peaks = live
    manager = make()
    beta = manager.get_labourer("beta")  # cap 2
    manager.create_tasks(beta, [{}] * 7)
    time.sleep(1.01)  # created before this second: queued for the run
    report = Orchestrator(manager).run(labourer_ids=["beta"], follow=True)
    # Then one run invoked them all, never more than two at once
    assert report.labourers["beta"].outcomes["invoked"] == 7 and report.passes > 1
    assert len(lambda_endpoint.invocations) == 7 and peaks["beta"] == 2
    assert report.unfinished == []


def test_a_single_pass_still_fills_once(live, lambda_endpoint):
    make, _peaks = live
    manager = make()
    beta = manager.get_labourer("beta")
    manager.create_tasks(beta, [{}] * 7)
    time.sleep(1.01)
    assert Orchestrator(manager).run(labourer_ids=["beta"]).invoked == 2


def test_a_due_retry_is_started_by_the_run_that_waits_for_it(live, lambda_endpoint):
    make, _peaks = live
    manager = make()
    alpha = manager.get_labourer("alpha")
    delayed = manager.create_delayed_task(alpha, {"later": True}, delay=2)
    started = time.time()
    report = Orchestrator(manager).run(labourer_ids=["alpha"], follow=True)
    assert report.labourers["alpha"].outcomes["invoked"] == 1
    [call] = lambda_endpoint.invocations
    assert call.event["task_id"] == delayed["task_id"] and call.event["later"] is True
    # It waited for the due time (not for the next minute)
    assert delayed["desired_launch_time"] <= time.time() < started + 10


def test_a_retry_that_comes_while_the_run_follows_is_started_by_that_run(live, lambda_endpoint):
    # Given a run following a labourer that had no retry waiting when it started
    make, _peaks = live
    manager = make()
    beta = manager.get_labourer("beta")  # cap 2
    manager.create_tasks(beta, [{}] * 8)
    time.sleep(1.01)
    later: dict = {}

    def wait_for_retry_soon():  # what the Scavenger does with a task that failed meanwhile
        time.sleep(0.3)
        later.update(make().create_delayed_task(beta, {"later": True}, delay=2))

    mover = threading.Thread(target=wait_for_retry_soon)
    mover.start()
    report = Orchestrator(manager).run(labourer_ids=["beta"], follow=True)
    mover.join()
    # Then the run learnt of it while following, waited for its due time and started it (not the next minute's run)
    assert report.labourers["beta"].outcomes["invoked"] == 9
    assert later["task_id"] in {call.event["task_id"] for call in lambda_endpoint.invocations}


def test_a_run_waiting_for_a_later_retry_starts_an_earlier_one_that_came_meanwhile(live, lambda_endpoint):
    # Given a run whose queue is empty, waiting for a delayed task due in 8 s
    make, _peaks = live
    manager = make()
    alpha = manager.get_labourer("alpha")
    later = manager.create_delayed_task(alpha, {"which": "later"}, delay=8)
    sooner: dict = {}
    started_at: dict[str, float] = {}
    respond = lambda_endpoint.respond

    def record(call):
        started_at[call.event["which"]] = time.time()
        return respond(call)

    lambda_endpoint.respond = record

    def fail_meanwhile():  # the Scavenger puts a task that failed meanwhile to wait 2 s
        time.sleep(0.5)
        sooner.update(make().create_delayed_task(alpha, {"which": "sooner"}, delay=2))

    mover = threading.Thread(target=fail_meanwhile)
    mover.start()
    Orchestrator(manager).run(labourer_ids=["alpha"], follow=True)
    mover.join()
    # Then the earlier one started within 2 s of its due time, not when the run woke for the later one
    assert started_at["sooner"] - sooner["desired_launch_time"] <= 2
    assert started_at["sooner"] < later["desired_launch_time"] - 2 <= started_at["later"]


def test_a_wake_flag_makes_the_holder_look_again_before_letting_go(live, lambda_endpoint):
    make, _peaks = live
    manager = make()
    leases = LeaseStore(manager.dynamo_db_client, manager.config["sosw_orchestrator_leases_table"])
    leases.flag_wake("alpha", time.time() + 5)  # a wake-up that came while a run held the lease
    report = Orchestrator(manager).run(labourer_ids=["alpha"], follow=True)
    assert report.passes >= 2  # looked again instead of leaving
    # And a run that finds the lease held flags it for its holder
    assert leases.acquire("alpha", "other", time.time(), 60) is not None
    assert Orchestrator(make()).run(labourer_ids=["alpha"], follow=True).labourers["alpha"].skipped_reason
    row = manager.dynamo_db_client.get_item(
        TableName=manager.config["sosw_orchestrator_leases_table"], Key={"labourer_id": {"S": "alpha"}}
    )["Item"]
    assert "wake" in row


def test_the_cap_holds_with_two_following_orchestrators_and_a_burst_of_wakeups(live, lambda_endpoint, backend):
    if backend == "moto":
        pytest.skip("concurrent conditional writes: DynamoDB Local only (moto does not apply them atomically)")
    make, peaks = live
    manager = make()
    alpha = manager.get_labourer("alpha")  # cap 5
    manager.create_tasks(alpha, [{}] * 40)
    time.sleep(1.01)
    stop = time.monotonic() + 20
    errors: list[BaseException] = []

    def orchestrate(owner: str) -> None:
        try:
            while time.monotonic() < stop and len(lambda_endpoint.invocations) < 40:
                Orchestrator(make(), owner=owner).run(labourer_ids=["alpha"], follow=True)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    def wake_up() -> None:  # a burst of wake-ups: runs that find the lease held, or take it when free
        while time.monotonic() < stop and len(lambda_endpoint.invocations) < 40:
            Orchestrator(make()).run(labourer_ids=["alpha"])

    threads = [threading.Thread(target=orchestrate, args=(o,)) for o in ("one", "two")]
    threads += [threading.Thread(target=wake_up) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(lambda_endpoint.invocations) == 40
    assert len({c.event["task_id"] for c in lambda_endpoint.invocations}) == 40
    assert peaks["alpha"] <= 5


def test_an_idle_run_reads_little_and_writes_only_its_lease(live):
    make, _peaks = live
    manager = make()
    calls: list[str] = []
    manager.dynamo_db_client.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    report = Orchestrator(manager).run(follow=True)
    assert report.invoked == 0 and report.passes == 1
    writes = [c for c in calls if c in ("UpdateItem", "PutItem", "TransactWriteItems", "BatchWriteItem")]
    assert writes == ["UpdateItem"] * 4  # take and give back each labourer's lease
    assert (
        manager.dynamo_db_client.get_item(
            TableName=manager.config["sosw_orchestrator_leases_table"], Key={"labourer_id": {"S": "alpha#slots"}}
        ).get("Item")
        is None
    )
    assert counter_key("alpha") == {"labourer_id": "alpha#slots"}


def test_a_run_stops_following_a_labourer_whose_invokes_lambda_refuses(live, lambda_endpoint):
    make, _peaks = live
    manager = make()
    beta = manager.get_labourer("beta")
    manager.create_tasks(beta, [{}] * 5)
    time.sleep(1.01)
    lambda_endpoint.respond = lambda call: (429, "TooManyRequestsException")
    report = Orchestrator(manager).run(labourer_ids=["beta"], follow=True)
    # Then it gave up after the refused pass instead of claiming and releasing in a tight loop
    assert report.passes == 1 and report.labourers["beta"].outcomes["released"] == 2
    assert manager.get_length_of_queue_for_labourer(beta) == 5 and running(manager, "beta") == 0


def test_closes_under_another_cap_are_counted_by_a_process_with_a_lower_one(make_manager, clock):
    # Given 30 tasks of alpha claimed through the seed API (no cap), closed by WorkerAssistants whose config
    # already says cap 60 (a deploy in progress): their freed counts are spread over 60 shards
    narrow = make_manager()  # cap 5: 5 shards of its own
    wide = make_manager(labourers={"alpha": {"max_simultaneous_invocations": 60}})
    alpha = narrow.get_labourer("alpha")
    narrow.create_tasks(alpha, [{}] * 30)
    clock.advance(1)
    narrow.open_run_window()
    claimed = [narrow.mark_task_invoked(alpha, task) for task in narrow.get_next_for_labourer(alpha, 30)]
    for task in claimed:
        assert wide.mark_task_completed(task["task_id"], attempt=1, labourer_id="alpha")
    # When a process on the cap-5 config reads the counts, twice (its first read reads every shard)
    # Then every close is counted: nothing runs, and the later, narrower read still finds the shards in use
    assert running(narrow, "alpha") == 0 == running(narrow, "alpha") == occupying(narrow.config)["alpha"]
    # And its next claim records them on the counter item, for every process's narrow reads
    narrow.create_tasks(alpha, [{}])
    clock.advance(1)
    narrow.open_run_window()
    assert len(narrow.claim_tasks(alpha, narrow.get_next_for_labourer(alpha, 1), 5)) == 1
    item = narrow.dynamo_db_client.get_item(
        TableName=narrow.config["sosw_orchestrator_leases_table"], Key={"labourer_id": {"S": "alpha#slots"}}
    )["Item"]
    assert max(int(n) for n in item["shard_counts"]["NS"]) > 5
    assert running(make_manager(), "alpha") == 1 == occupying(narrow.config)["alpha"]
