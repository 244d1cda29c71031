"""Orchestrator and Scavenger cores, in process, on both backends, with a loopback Lambda endpoint."""

from __future__ import annotations

import random

import pytest

from sosw.errors import ConfigError, InvalidInputError
from sosw.failure_destination import report_failure_record
from sosw.labourer import Labourer
from sosw.leases import LeaseStore
from sosw.managers.task import ReportOutcome
from sosw.orchestrator import Orchestrator
from sosw.retry import retry_delay
from sosw.scavenger import Scavenger
from tests.conftest import scan_all


@pytest.fixture
def orchestrator_config(config):
    return {**config, "orchestrator_lease_settle_seconds": 0}


def test_orchestrator_fills_each_labourer_up_to_its_cap(make_manager, orchestrator_config, lambda_endpoint):
    manager = make_manager(**orchestrator_config)
    alpha, beta = manager.get_labourers()
    manager.create_tasks(alpha, [{}] * 8)
    manager.create_tasks(beta, [{}] * 8)
    report = Orchestrator(manager).run()
    assert {k: v.outcomes["invoked"] for k, v in report.labourers.items()} == {"alpha": 5, "beta": 2}
    # A second run sees them running and invokes nothing more
    report = Orchestrator(make_manager(**orchestrator_config)).run()
    assert report.invoked == 0 and report.labourers["alpha"].running == 5
    assert len(lambda_endpoint.invocations) == 7


def test_rate_limit_holds_across_runs_in_one_minute(make_manager, orchestrator_config, lambda_endpoint, clock):
    cfg = {
        **orchestrator_config,
        "labourers": {
            "alpha": {"max_simultaneous_invocations": 50, "max_invocations_per_minute": 7, "max_duration": 5}
        },
    }
    manager = make_manager(**cfg)
    [alpha] = manager.get_labourers()
    manager.create_tasks(alpha, [{}] * 30)
    assert Orchestrator(manager).run().invoked == 7
    clock.advance(30)
    assert Orchestrator(make_manager(**cfg)).run().invoked == 0  # same minute
    clock.advance(31)
    assert Orchestrator(make_manager(**cfg)).run().invoked == 7  # next window


def test_a_held_lease_makes_a_second_orchestrator_skip(make_manager, orchestrator_config, lambda_endpoint, clock):
    manager = make_manager(**orchestrator_config)
    leases = LeaseStore(manager.dynamo_db_client, manager.config["sosw_orchestrator_leases_table"])
    assert leases.acquire("alpha", "other", clock.now(), 60) is not None
    manager.create_tasks(manager.get_labourer("alpha"), [{}] * 3)
    report = Orchestrator(manager).run()
    assert report.labourers["alpha"].skipped_reason.startswith("another orchestrator")
    assert report.labourers["alpha"].outcomes["invoked"] == 0
    clock.advance(61)  # an abandoned lease expires
    assert Orchestrator(make_manager(**orchestrator_config)).run().labourers["alpha"].outcomes["invoked"] == 3


def test_one_failing_labourer_does_not_stop_the_others(make_manager, orchestrator_config, lambda_endpoint):
    manager = make_manager(**orchestrator_config)
    alpha, beta = manager.get_labourers()
    manager.create_tasks(alpha, [{}] * 2)
    manager.create_tasks(beta, [{}] * 2)
    lambda_endpoint.respond = lambda call: (429, "TooManyRequestsException") if call.function == "alpha" else None
    report = Orchestrator(manager).run()
    assert report.labourers["alpha"].outcomes["released"] == 2
    assert report.labourers["beta"].outcomes["invoked"] == 2
    assert manager.get_length_of_queue_for_labourer(alpha) == 2  # released: back in the queue


def test_orchestrator_stops_before_the_lambda_timeout(make_manager, orchestrator_config, lambda_endpoint):
    manager = make_manager(**orchestrator_config)
    manager.create_tasks(manager.get_labourer("alpha"), [{}] * 3)
    report = Orchestrator(manager).run(remaining_seconds=lambda: 2.0)  # less than the 5 s safety margin
    assert report.invoked == 0 and lambda_endpoint.invocations == []


def test_bad_coefficients_name_the_key(make_manager, orchestrator_config):
    with pytest.raises(ConfigError, match="invocation_number_coefficient"):
        Orchestrator(make_manager(**orchestrator_config, invocation_number_coefficient={0: 2}))


@pytest.mark.parametrize("workers", [0, 65, "16", True])
def test_orchestrator_threads_beyond_the_connection_pool_are_refused(make_manager, orchestrator_config, workers):
    # One connection per invoking thread: past the clients' pool, every call would open a new one.
    with pytest.raises(ConfigError, match=r"orchestrator_max_workers: expected an integer from 1 to 64"):
        Orchestrator(make_manager(**orchestrator_config, orchestrator_max_workers=workers))


def test_scavenger_archives_retries_closes_dead_and_requeues(make_manager, config, clock):
    manager = make_manager()
    alpha, beta = manager.register_labourers()  # beta: max_attempts 2
    done, failing, silent = (manager.create_task(alpha, payload={"i": i}) for i in range(3))
    last = manager.create_task(beta, payload={})
    for task in (done, failing, silent):
        manager.mark_task_invoked(alpha, task)
    manager.mark_task_invoked(beta, last)
    manager.mark_task_invoked(beta, last, check_running=False)  # its second and last attempt
    manager.mark_task_completed(done["task_id"], attempt=1)
    manager.mark_task_failed(failing["task_id"], attempt=1, error_type="IOError")
    manager.mark_task_failed(last["task_id"], attempt=2, error_type="IOError", error_message="disk")

    report = Scavenger(make_manager()).run()
    assert dict(report.labourers["alpha"]) == {"archived": 1, "retried": 1}
    assert dict(report.labourers["beta"]) == {"dead": 1}
    tables = scan_all(config)
    assert {t["task_id"] for t in tables["retry"]} == {failing["task_id"]}
    dead = next(t for t in tables["closed"] if t["task_id"] == last["task_id"])
    assert dead["labourer_id_task_status"] == "beta_0" and dead["last_error"]["message"] == "disk"
    # linear policy: max_duration (60) x attempts (1)
    assert tables["retry"][0]["desired_launch_time"] == int(clock.now()) + 60

    clock.advance(91)  # the silent task expires; the failed one is due
    report = Scavenger(make_manager()).run()
    assert report.labourers["alpha"]["retried"] == 1 and report.labourers["alpha"]["requeued"] == 1
    assert [t["task_id"] for t in scan_all(config)["tasks"]] == [failing["task_id"]]


def test_never_retry_errors_go_straight_to_dead(make_manager, config):
    cfg = {**config, "labourers": {"alpha": {"never_retry_errors": ["ValidationError"], "max_duration": 5}}}
    manager = make_manager(**cfg)
    [alpha] = manager.register_labourers()
    task = manager.mark_task_invoked(alpha, manager.create_task(alpha, payload={}))
    manager.mark_task_failed(task["task_id"], attempt=1, error_type="ValidationError")
    assert Scavenger(make_manager(**cfg)).run().labourers["alpha"]["dead"] == 1


def test_a_task_completed_just_as_it_expires_is_not_retried(make_manager, config, clock):
    # Given a task that expired, read by the Scavenger...
    manager = make_manager()
    alpha = manager.register_labourers()[0]
    task = manager.mark_task_invoked(alpha, manager.create_task(alpha, payload={}))
    clock.advance(91)
    late = make_manager()
    expired = late.get_expired_tasks_for_labourer(late.open_run_window()[0])
    # ...when the worker's completion lands before the Scavenger moves it
    assert manager.mark_task_completed(task["task_id"], attempt=1)
    # Then the move is a no-op, and the next run archives it as completed
    assert late.move_task_to_retry_table(expired[0], 10) is False
    assert Scavenger(make_manager()).run().labourers["alpha"]["archived"] == 1
    assert scan_all(config)["closed"][0]["labourer_id_task_status"] == "alpha_1"


def test_exponential_delays_stay_within_their_bounds():
    labourer = Labourer(id="x", retry_policy="exponential", retry_base=10, retry_cap=100)
    rng = random.Random(7)
    for attempts, bound in [(1, 10), (2, 20), (3, 40), (4, 80), (5, 100), (9, 100)]:
        delays = [retry_delay(labourer, attempts, rng) for _ in range(200)]
        assert all(0 <= d <= bound for d in delays) and max(delays) > bound / 2


def test_linear_delay_is_max_duration_times_attempts():
    labourer = Labourer(id="x", duration=30)
    assert retry_delay(labourer, 3) == 90
    labourer.set_custom_attribute("max_duration", 50)
    assert retry_delay(labourer, 2) == 100


def test_failure_destination_record_marks_the_attempt_failed(manager):
    alpha = manager.register_labourers()[0]
    task = manager.mark_task_invoked(alpha, manager.create_task(alpha, payload={}))
    record = {
        "requestContext": {"condition": "RetriesExhausted"},
        "requestPayload": {"task_id": task["task_id"], "attempts": 1},
        "responsePayload": {"errorType": "Sandbox.Timedout", "errorMessage": "Task timed out"},
    }
    assert report_failure_record(manager, record).outcome is ReportOutcome.ACCEPTED
    assert manager.get_task_by_id(task["task_id"])["last_error"]["type"] == "Sandbox.Timedout"
    assert report_failure_record(manager, record).outcome is ReportOutcome.DUPLICATE
    with pytest.raises(InvalidInputError, match="requestPayload"):
        report_failure_record(manager, {"requestPayload": {}})


def test_duplicate_delivery_guard(manager):
    alpha = manager.register_labourers()[0]
    task = manager.mark_task_invoked(alpha, manager.create_task(alpha, payload={}))
    assert manager.mark_task_started(task["task_id"], 1).outcome is ReportOutcome.ACCEPTED
    assert manager.mark_task_started(task["task_id"], 1).outcome is ReportOutcome.DUPLICATE
    assert manager.mark_task_started(task["task_id"], 2).outcome is ReportOutcome.STALE
    # the next attempt may start again
    again = manager.mark_task_invoked(alpha, task, check_running=False)
    assert manager.mark_task_started(task["task_id"], again["attempts"]).outcome is ReportOutcome.ACCEPTED


def test_queue_snapshot_is_two_small_reads_whatever_the_queue(make_manager, orchestrator_config, clock):
    manager = make_manager(**orchestrator_config)
    alpha = manager.get_labourer("alpha")
    assert manager.get_queue_snapshot(alpha) == {"queue_length": 0, "oldest_queued_age": None}
    manager.create_tasks(alpha, [{}] * 40)
    clock.advance(30)
    calls = []
    manager.dynamo_db_client.meta.events.register("before-call.dynamodb", lambda model, **kw: calls.append(model.name))
    snapshot = manager.get_queue_snapshot(alpha)
    assert snapshot == {"queue_length": 40, "oldest_queued_age": 30.0}
    assert calls == ["Query", "Query"]


def test_queue_snapshot_of_a_queue_emptied_between_its_two_reads(make_manager, orchestrator_config, clock):
    # Given one queued task, claimed between the snapshot's two reads (or an index read behind the first)
    manager = make_manager(**orchestrator_config)
    alpha = manager.get_labourer("alpha")
    [task_id] = manager.create_tasks(alpha, [{}])
    clock.advance(5)
    head = manager._queue.greenfield_query

    def claimed_meanwhile(*args, **kwargs):
        if kwargs.get("ascending") is False:
            manager.mark_task_invoked(alpha, manager.get_task_by_id(task_id))
        return head(*args, **kwargs)

    manager._queue.greenfield_query = claimed_meanwhile
    # Then the snapshot reports what the first read saw, instead of failing the Orchestrator's run
    assert manager.get_queue_snapshot(alpha) == {"queue_length": 1, "oldest_queued_age": 5.0}


def test_orchestrator_reports_the_queue_after_its_run(make_manager, orchestrator_config, lambda_endpoint):
    manager = make_manager(**orchestrator_config)
    manager.create_tasks(manager.get_labourer("alpha"), [{}] * 12)
    run = Orchestrator(manager).run().labourers["alpha"]
    assert run.outcomes["invoked"] == 5 and run.queue_length == 7


def test_tasks_claimed_after_this_runs_start_count_as_running(
    make_manager, orchestrator_config, lambda_endpoint, clock
):
    # Given an orchestrator whose run started at t0 and is still busy with another labourer...
    slow = make_manager(**orchestrator_config)
    beta = next(lab for lab in slow.open_run_window() if lab.id == "beta")
    slow.create_tasks(beta, [{}] * 6)
    # ...when a second orchestrator claims beta's cap at t0 + 5
    clock.advance(5)
    assert Orchestrator(make_manager(**orchestrator_config)).run().labourers["beta"].outcomes["invoked"] == 2
    # Then the first one, counting with its t0 window, still sees them running (the cap holds)
    assert slow.get_count_of_running_tasks_for_labourer(beta) == 2


def test_a_notification_left_pending_is_published_once_on_the_next_run(make_manager, config):
    class FlakySns:
        def __init__(self) -> None:
            self.sent: list[str] = []
            self.fail = True

        def publish(self, **kwargs):
            if self.fail:
                raise ConnectionError("SNS unreachable")
            self.sent.append(kwargs["Message"])

    manager = make_manager()
    beta = manager.register_labourers()[1]  # max_attempts 2
    task = manager.create_task(beta, payload={})
    manager.mark_task_invoked(beta, task)
    claimed = manager.mark_task_invoked(beta, task, check_running=False)
    manager.mark_task_failed(task["task_id"], attempt=claimed["attempts"], error_type="Boom")
    sns = FlakySns()
    # When publishing fails, the task is still closed dead, with its notification pending
    first = Scavenger(make_manager(), sns_client=sns, topic_arn="arn:aws:sns:us-east-1:123456789012:dead").run()
    assert first.labourers["beta"]["dead"] == 1 and sns.sent == []
    assert manager.get_closed_task_by_id(task["task_id"])["notify_pending"] is True
    # Then the next runs publish it exactly once
    sns.fail = False
    for _ in range(2):
        Scavenger(make_manager(), sns_client=sns, topic_arn="arn:aws:sns:us-east-1:123456789012:dead").run()
    assert len(sns.sent) == 1 and "notify_pending" not in manager.get_closed_task_by_id(task["task_id"])


def test_scavenger_stops_before_its_time_runs_out(make_manager, config):
    manager = make_manager()
    alpha = manager.register_labourers()[0]
    for _ in range(3):
        task = manager.mark_task_invoked(alpha, manager.create_task(alpha, payload={}))
        manager.mark_task_completed(task["task_id"], attempt=1)
    report = Scavenger(make_manager()).run(remaining_seconds=lambda: 1.0)
    assert report.labourers["alpha"]["archived"] == 0
    assert len(scan_all(config)["tasks"]) == 3


def test_start_guard_accepts_its_own_retry_and_refuses_a_start_past_the_cooldown(manager, clock):
    alpha = manager.register_labourers()[0]  # cooldown 30
    task = manager.mark_task_invoked(alpha, manager.create_task(alpha, payload={}))
    assert manager.mark_task_started(task["task_id"], 1, token="t1", labourer_id="alpha")
    # the same call again (botocore retried it after a lost response): still ours
    assert (
        manager.mark_task_started(task["task_id"], 1, token="t1", labourer_id="alpha").outcome is ReportOutcome.ACCEPTED
    )
    # another delivery of the same attempt
    assert manager.mark_task_started(task["task_id"], 1, token="t2").outcome is ReportOutcome.DUPLICATE
    # a delivery that waited longer than the cooldown may not start: it could outlive the expiry
    late = manager.mark_task_invoked(alpha, task, check_running=False)
    clock.advance(31)
    refused = manager.mark_task_started(task["task_id"], late["attempts"], token="t3", labourer_id="alpha")
    assert refused.outcome is ReportOutcome.STALE and "too late" in refused.reason


def test_redrive_keeps_attempt_numbers_growing_and_gives_max_attempts_afresh(make_manager, config, clock):
    manager = make_manager()
    beta = manager.register_labourers()[1]  # max_attempts 2
    task = manager.create_task(beta, payload={})
    for attempt in (1, 2):
        claimed = manager.mark_task_invoked(beta, manager.get_task_by_id(task["task_id"]), check_running=False)
        manager.mark_task_failed(task["task_id"], attempt=attempt, error_type="Boom")
        Scavenger(make_manager()).run()
        clock.advance(61)  # past the retry delay (max_duration 60 x 1)
        beta = manager.open_run_window()[1]
        due = manager.get_tasks_to_retry_for_labourer(beta)
        if due:
            manager.retry_tasks(beta, due)
    [dead] = manager.get_dead_tasks(beta)
    assert dead["attempts"] == 2 and claimed["attempts"] == 2
    # When it is redriven, its next claim is attempt 3: a late report for attempt 1 can't pass for it
    assert manager.redrive_task(dead)
    again = manager.mark_task_invoked(beta, manager.get_task_by_id(task["task_id"]))
    assert again["attempts"] == 3
    assert manager.mark_task_completed(task["task_id"], attempt=1).outcome is ReportOutcome.STALE
    # and one failure does not make it dead again: it has max_attempts (2) afresh
    manager.mark_task_failed(task["task_id"], attempt=3, error_type="Boom")
    report = Scavenger(make_manager()).run()
    assert report.labourers["beta"]["retried"] == 1 and report.labourers["beta"]["dead"] == 0


def _emf_documents(text: str) -> list[dict]:
    import json

    docs = []
    for line in text.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            docs.append(json.loads(line))
    return docs


def test_each_run_writes_one_emf_document_per_labourer(
    make_manager, orchestrator_config, lambda_endpoint, capsys, monkeypatch
):
    # Given two labourers with queued tasks, and metrics on (the tests turn them off elsewhere)
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "false")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "sosw")  # as in Lambda: it must not become a dimension
    manager = make_manager(**orchestrator_config)
    alpha, beta = manager.get_labourers()
    manager.create_tasks(alpha, [{}] * 3)
    manager.create_tasks(beta, [{}] * 3)
    capsys.readouterr()
    # When the Orchestrator runs, then the Scavenger
    Orchestrator(manager).run()
    orchestrator_docs = _emf_documents(capsys.readouterr().out)
    Scavenger(make_manager()).run()
    scavenger_docs = _emf_documents(capsys.readouterr().out)
    # Then each wrote one document per labourer, holding all of its figures, under the one dimension
    assert sorted(d["labourer_id"] for d in orchestrator_docs) == ["alpha", "beta"]
    for doc in orchestrator_docs:
        [directive] = doc["_aws"]["CloudWatchMetrics"]
        assert directive["Dimensions"] == [["labourer_id"]] and "service" not in doc
        units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
        expected = {
            "invoked": "Count",
            "running": "Count",
            "invocations_released": "Count",
            "orchestrator_errors": "Count",
            "queue_length": "Count",
            "oldest_queued_age": "Seconds",  # only while something is queued
            "orchestrator_duration": "Seconds",
        }
        if doc["queue_length"] == [0.0]:
            del expected["oldest_queued_age"]
        assert units == expected
    by_labourer = {d["labourer_id"]: d for d in orchestrator_docs}
    assert by_labourer["alpha"]["invoked"] == [3.0] and by_labourer["alpha"]["queue_length"] == [0.0]
    assert by_labourer["beta"]["invoked"] == [2.0] and by_labourer["beta"]["queue_length"] == [1.0]
    assert sorted(d["labourer_id"] for d in scavenger_docs) == ["alpha", "beta"]
    assert {m["Name"] for m in scavenger_docs[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"]} == {
        "archived",
        "retried",
        "dead",
        "requeued",
    }
