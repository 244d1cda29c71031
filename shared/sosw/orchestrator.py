"""The Orchestrator: for each labourer, decide how many tasks may start now, claim and invoke them.

desired = floor(max_simultaneous_invocations x coefficient[health]) - running, at least 0, then
capped by the rate limit. Invocations run in parallel on a bounded pool, so hundreds fit in one
scheduled run; the run stops starting new ones before the Lambda's own timeout. One labourer's
errors don't stop the others.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from sosw import aws
from sosw.capacity import free_slots
from sosw.dynamo import error_code, is_transient
from sosw.errors import ConfigError, InvokeError
from sosw.labourer import Labourer
from sosw.leases import LEASE_SECONDS, Lease, LeaseStore, ProcessLeases
from sosw.managers.task import InvokeResult, TaskManager
from sosw.metrics import put_labourer_metrics
from sosw.processors import SoswProcessor

logger = Logger(child=True)

DEFAULT_COEFFICIENTS = {0: 0, 1: 0, 2: 0.5, 3: 0.75, 4: 1}
#: Passes of one labourer that DynamoDB's refusals may cost a run before it lets the labourer go.
MAX_REFUSED_PASSES = 20
# Outcomes of an invocation that did not reach the worker (or may not have).
_NOT_DELIVERED = {"released", "uncertain", "error", "not_started"}


@dataclass
class LabourerRun:
    labourer_id: str
    health: int = 4
    running: int = 0
    desired: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    skipped_reason: str = ""
    error: str = ""
    queue_length: int | None = None
    oldest_queued_age: float | None = None


@dataclass
class OrchestratorReport:
    labourers: dict[str, LabourerRun] = field(default_factory=dict)
    duration: float = 0.0
    passes: int = 0
    failed_passes: int = 0  # passes whose read of the slot counters DynamoDB refused
    unfinished: list[str] = field(default_factory=list)

    @property
    def invoked(self) -> int:
        return sum(run.outcomes[InvokeResult.INVOKED.value] for run in self.labourers.values())


@dataclass
class _Follow:
    """What a run knows of one labourer between its passes."""

    last_progress: float
    lease: Lease | None = None
    health: int | None = None
    running: int | None = None
    queued: bool = True  # may have queued tasks (until a read finds fewer than asked)
    queue_read: float | None = None
    next_due: float | None = None  # None: not read yet; inf: no retry falls due within the linger horizon
    due_read: float | None = None  # when the head of the retry table was last read (monotonic)
    refused: int = 0  # passes lost to DynamoDB's refusals (throttles, conflicts) past their retries

    @property
    def waits_for_retry(self) -> bool:
        return self.next_due is not None and self.next_due != math.inf


class Orchestrator(SoswProcessor):
    """One scheduled run: ``Orchestrator(task_manager).run(remaining_seconds)``.

    Or sosw's way (``sosw.processors``): ``Orchestrator(custom_config)``, then ``orchestrator(event)``.
    """

    def __init__(
        self,
        task_manager: TaskManager | Mapping[str, Any] | None = None,
        *,
        max_workers: int | None = None,
        owner: str | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        **kwargs: Any,
    ) -> None:
        self.tm = task_manager = self._task_manager_of(task_manager, kwargs)
        config = task_manager.config
        self.max_workers = self._max_workers(max_workers or config.get("orchestrator_max_workers", 16))
        self.safety_seconds = float(config.get("orchestrator_safety_seconds", 5))
        self.lease_settle_seconds = float(config.get("orchestrator_lease_settle_seconds", 0))
        self.poll_seconds = float(config.get("dispatch_poll_seconds", 0.2))
        self.poll_max_seconds = float(config.get("dispatch_poll_max_seconds", 1))
        self.wait_seconds = float(config.get("dispatch_wait_seconds", 20))
        self.linger_seconds = float(config.get("dispatch_linger_seconds", 60))
        self.coefficients = self._coefficients(config.get("invocation_number_coefficient", DEFAULT_COEFFICIENTS))
        self.owner = owner or uuid.uuid4().hex
        self.leases: LeaseStore | ProcessLeases = LeaseStore(
            task_manager.dynamo_db_client, config["sosw_orchestrator_leases_table"]
        )
        #: No leases table: sosw's three tables alone (see _without_leases_table).
        self.sosw_tables_only = False
        self._monotonic = monotonic
        self._running_now: dict[str, int] = {}

    # sosw's names: a subclass that replaces get_desired_invocation_number_for_labourer changes what a run does.

    def get_desired_invocation_number_for_labourer(self, labourer: Labourer) -> int:
        """How many of the labourer's tasks to start now: its cap at its health, less those running.

        During a run, "running" is the pass's exact count; called alone, it is read from the slot counters.
        """
        running = self._running_now.get(labourer.id)
        if running is None:
            running = self._running_counts([labourer])[labourer.id]
        if labourer.has_attr("health"):
            health = labourer.get_attr("health")
        else:
            health = self.tm.ecology_client.get_labourer_status(labourer)
        return free_slots(labourer.max_simultaneous_invocations, self.coefficients[health], running, None).desired

    def get_labourers(self) -> list[Labourer]:
        """The configured labourers (sosw's)."""
        return self.tm.get_labourers()

    def invoke_for_labourer(self, labourer: Labourer) -> OrchestratorReport:
        """One pass for this labourer alone: its free slots filled once (sosw's)."""
        return self.run(labourer_ids=[labourer.id])

    @staticmethod
    def _max_workers(value: Any) -> int:
        # One connection per invoking thread: past the clients' pool, every call would open a new one.
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= aws.MAX_POOL_CONNECTIONS:
            raise ConfigError(
                f"orchestrator_max_workers: expected an integer from 1 to {aws.MAX_POOL_CONNECTIONS} "
                f"(the clients' connection pool), got {value!r}"
            )
        return value

    @staticmethod
    def _coefficients(raw: Mapping[Any, Any]) -> dict[int, float]:
        try:
            coefficients = {int(k): float(v) for k, v in raw.items()}
        except (TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"invocation_number_coefficient: expected {{health: number}}, got {raw!r}") from exc
        if set(coefficients) != set(range(5)) or not all(0 <= v <= 1 for v in coefficients.values()):
            raise ConfigError(
                f"invocation_number_coefficient: expected a number in [0, 1] for each health 0..4, got {raw!r}"
            )
        return coefficients

    def run(
        self,
        remaining_seconds: Callable[[], float] | None = None,
        *,
        labourer_ids: Iterable[str] | None = None,
        follow: bool = False,
    ) -> OrchestratorReport:
        """Orchestrate the labourers (``labourer_ids``: only those). ``remaining_seconds``: the Lambda's time left.

        One pass fills every free slot once. ``follow=True`` keeps refilling as slots free up, while work
        remains and for at most ``dispatch_wait_seconds`` without progress; a retry due within
        ``dispatch_linger_seconds`` is waited for and started. Labourers with work left when the time runs
        out are listed in ``report.unfinished`` (the handler hands them to its next invocation).
        """
        started = self._monotonic()
        report = OrchestratorReport()
        self.tm.remaining_seconds = remaining_seconds  # DynamoDB's refusals are retried within the run's time
        # Health is read per labourer, inside its own try, so one labourer's bad metric config or
        # CloudWatch error doesn't stop the others.
        ecology = self.tm.ecology_client
        ecology.register_task_manager(self.tm)
        wanted = None if labourer_ids is None else set(labourer_ids)
        labourers = [lab for lab in self.tm.open_run_window() if wanted is None or lab.id in wanted]
        states = {lab.id: _Follow(last_progress=started) for lab in labourers}
        active = list(labourers)
        failed_in_a_row = 0
        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="invoke") as pool:
            try:
                while active and self._time_left(remaining_seconds) > 0:
                    if report.passes:
                        self.tm.open_run_window()  # this pass's windows: "queued" means before now
                    report.passes += 1
                    try:
                        running = self._running_counts(active)
                    except Exception as exc:  # DynamoDB refused past its retries: this pass is lost, not the run
                        report.failed_passes += 1
                        failed_in_a_row += 1
                        if not is_transient(exc) or failed_in_a_row > MAX_REFUSED_PASSES:
                            raise
                        logger.warning("Reading the slot counters failed: next pass", extra={"error": repr(exc)})
                        time.sleep(min(self.poll_max_seconds, max(0.0, self._time_left(remaining_seconds))))
                        continue
                    failed_in_a_row = 0
                    still = []
                    for labourer in active:
                        run = report.labourers.setdefault(labourer.id, LabourerRun(labourer.id))
                        state = states[labourer.id]
                        try:
                            keep = self._pass(labourer, run, state, pool, remaining_seconds, running[labourer.id])
                            keep = follow and keep and self._follows(state)
                        except Exception as exc:  # one labourer's failure must not stop the others
                            keep = self._failed(labourer, run, state, exc) and follow
                        if keep or not state.lease:
                            still += [labourer] if keep else []
                            continue
                        if self._release(state):  # woken meanwhile: another look before letting go
                            state.queued = True
                            still.append(labourer)
                    active = still
                    if active:
                        time.sleep(self._pause(active, states))
            finally:
                self._running_now.clear()  # a pass's counts, not to be taken for later ones
                for state in states.values():
                    self._release(state)
        report.unfinished = [lab.id for lab in active]
        for labourer in labourers:
            run = report.labourers.get(labourer.id)
            if run is not None and not run.skipped_reason and not run.error:
                snapshot = self.tm.get_queue_snapshot(labourer)
                run.queue_length = int(snapshot["queue_length"] or 0)
                run.oldest_queued_age = snapshot["oldest_queued_age"]
        report.duration = self._monotonic() - started
        self._put_metrics(report)
        logger.info(
            "Orchestrator run done",
            extra={"duration": report.duration, "invoked": report.invoked, "passes": report.passes},
        )
        return report

    def _running_counts(self, labourers: list[Labourer]) -> dict[str, int]:
        """The slot counters; on sosw's three tables alone (no leases table), sosw's count from the index."""
        if not self.sosw_tables_only:
            try:
                return self.tm.get_running_counts(labourers)
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                self._without_leases_table()
        return {lab.id: self.tm.get_count_of_running_tasks_for_labourer(lab) for lab in labourers}

    def _without_leases_table(self) -> None:
        """Run as sosw's Orchestrator does on sosw's tables: warned once, in one line that says what is lost."""
        self.sosw_tables_only = True
        self.leases = ProcessLeases()
        logger.warning(
            f"No leases table {self.tm.config['sosw_orchestrator_leases_table']!r}: running as sosw's Orchestrator "
            "does, counting running tasks from the index (the cap is only as exact as sosw's), with no lease "
            "per labourer and no rate limit. The stack creates the table (cdk deploy, or sosw local)."
        )

    def _failed(self, labourer: Labourer, run: LabourerRun, state: _Follow, exc: Exception) -> bool:
        """Record a failed pass; True to try the labourer again in this run.

        A refusal that load explains (DynamoDB throttled or conflicted past its retries) costs the labourer this
        pass only: the next one, a poll later, tries again. Anything else lets it go until the next run.
        """
        if is_transient(exc) and state.refused < MAX_REFUSED_PASSES:
            state.refused += 1
            run.outcomes["refused_passes"] += 1
            logger.warning(
                "DynamoDB refused a pass: trying again", extra={"labourer_id": labourer.id, "error": repr(exc)}
            )
            return True
        run.error = f"{type(exc).__name__}: {exc}"
        logger.exception("Orchestrating a labourer failed", extra={"labourer_id": labourer.id})
        return False

    def _put_metrics(self, report: OrchestratorReport) -> None:
        for run in report.labourers.values():
            counts = {
                "invoked": run.outcomes[InvokeResult.INVOKED.value],
                "running": run.running,
                "invocations_released": run.outcomes["released"],
                "orchestrator_errors": int(bool(run.error)),
            }
            if run.queue_length is not None:
                counts["queue_length"] = run.queue_length
            put_labourer_metrics(
                run.labourer_id,
                counts,
                seconds={"oldest_queued_age": run.oldest_queued_age, "orchestrator_duration": report.duration},
            )

    def _time_left(self, remaining_seconds: Callable[[], float] | None) -> float:
        return math.inf if remaining_seconds is None else remaining_seconds() - self.safety_seconds

    def _pass(
        self,
        labourer: Labourer,
        run: LabourerRun,
        state: _Follow,
        pool: ThreadPoolExecutor,
        remaining_seconds: Callable[[], float] | None,
        running: int,
    ) -> bool:
        """Fill the labourer's free slots once; True while it has work left to follow."""
        if self._time_left(remaining_seconds) <= 0:
            run.skipped_reason = run.skipped_reason or "no time left in this run"
            return False
        now = self.tm.clock.now()
        if state.lease is None or state.lease.until - now < LEASE_SECONDS / 2:
            lease_seconds = min(LEASE_SECONDS, max(self._time_left(remaining_seconds), 1.0))
            try:
                lease = self.leases.acquire(labourer.id, self.owner, now, lease_seconds)
            except ClientError as exc:
                if error_code(exc) != "ResourceNotFoundException":
                    raise
                self._without_leases_table()
                lease = self.leases.acquire(labourer.id, self.owner, now, lease_seconds)
            if lease is None:
                if state.lease is None:
                    run.skipped_reason = "another orchestrator holds this labourer"
                    # Its holder looks at the queue once more before letting go (see _release).
                    self.leases.flag_wake(labourer.id, now)
                    logger.info("Labourer leased by another orchestrator", extra={"labourer_id": labourer.id})
                return False
            state.lease = lease
        if state.health is None:
            state.health = run.health = self.tm.ecology_client.get_labourer_status(labourer)
            labourer.set_custom_attribute("health", state.health)
        if state.running is not None and running < state.running:
            state.last_progress = self._monotonic()  # slots freed since the last pass
        state.running = run.running = running
        self._requeue_due(labourer, state, now)
        allowed = state.lease.invocations_left(labourer.max_invocations_per_minute, now)
        slots = free_slots(labourer.max_simultaneous_invocations, self.coefficients[state.health], running, allowed)
        self._running_now[labourer.id] = running
        # sosw's hook decides, within the free slots (the claims hold the cap whatever it answers).
        wanted = int(self.get_desired_invocation_number_for_labourer(labourer))
        cap, desired = slots.cap, min(slots.desired, max(0, wanted))
        run.desired = max(run.desired, desired)
        if desired > 0 and state.queued:
            state.queue_read = now
            tasks = self.tm.get_next_for_labourer(labourer, cnt=desired)
            state.queued = len(tasks) >= desired
            if tasks:
                before = run.outcomes.copy()
                self._invoke(labourer, state, run, pool, remaining_seconds, tasks, cap, now)
                outcomes = run.outcomes - before
                if not outcomes[InvokeResult.INVOKED.value] and outcomes.keys() & _NOT_DELIVERED:
                    return False  # Lambda refuses this worker now: the schedule tries again, not a tight loop
        elif state.queued and cap > 0 and state.queue_read is None:
            state.queue_read = now
            state.queued = bool(self.tm.get_next_for_labourer(labourer, cnt=1))
        logger.debug(
            "Labourer pass",
            extra={"labourer_id": labourer.id, "running": running, "desired": desired, "queued": state.queued},
        )
        if allowed is not None and allowed <= desired:
            return False  # the rate limit's window is spent: the next minute's run goes on
        return cap > 0 and (state.queued or state.waits_for_retry)

    def _invoke(
        self,
        labourer: Labourer,
        state: _Follow,
        run: LabourerRun,
        pool: ThreadPoolExecutor,
        remaining_seconds: Callable[[], float] | None,
        tasks: list[dict[str, Any]],
        cap: int,
        now: float,
    ) -> None:
        """Claim the tasks together within the cap, then invoke them in parallel."""
        lease = state.lease
        assert lease is not None
        if labourer.max_invocations_per_minute is not None:
            # Charged before invoking, so a crash can't let the next run exceed the rate limit.
            state.lease = self.leases.record_invocations(lease, len(tasks), now)
        if self._time_left(remaining_seconds) <= 0 or self.tm.clock.now() >= lease.until - self.safety_seconds:
            return  # no time to invoke what would be claimed now
        claimed = self.tm.claim_tasks(labourer, tasks, cap)
        run.outcomes[InvokeResult.SKIPPED.value] += len(tasks) - len(claimed)
        if claimed:
            state.last_progress = self._monotonic()
            state.running = (state.running or 0) + len(claimed)

        def invoke(task: dict[str, Any]) -> str:
            # Never invoke past the Lambda's time or past our lease: the claims would be left to expire.
            if self._time_left(remaining_seconds) <= 0 or self.tm.clock.now() >= lease.until - self.safety_seconds:
                # Claimed but not invoked: back to the head of the queue, its slot and attempt given back.
                return "released" if self.tm.release_claimed_task(labourer, task) else "not_started"
            try:
                return self.tm.invoke_claimed_task(labourer, task).value
            except InvokeError as exc:
                return "released" if exc.released else "uncertain"
            except Exception:  # every invocation finishes before the lease is released
                logger.exception(
                    "Invoking a task failed", extra={"labourer_id": labourer.id, "task_id": task.get("task_id")}
                )
                return "error"

        for outcome in pool.map(invoke, claimed):
            run.outcomes[outcome] += 1

    def _requeue_due(self, labourer: Labourer, state: _Follow, now: float) -> None:
        """Put retries that fell due at the head of the queue, and learn when the next one falls due.

        The head of the retry table is read again while the run follows the labourer: a task that failed meanwhile
        waits there now (its wake-up found this run's lease and only flagged it), and may fall due before anything
        the run knew of. Every ``dispatch_poll_max_seconds`` (1 s), the slowest passes come: a retry put to wait
        2 s is seen before it falls due.
        """
        due = state.next_due is not None and state.next_due <= now
        stale_after = self.poll_max_seconds - self.poll_seconds  # a pass a poll early still reads it
        fresh = state.due_read is not None and self._monotonic() - state.due_read < stale_after
        if state.next_due is not None and not due and fresh:
            return
        if due:
            retries = self.tm.get_tasks_to_retry_for_labourer(labourer)
            if retries and self.tm.retry_tasks(labourer, retries):
                state.queued = True
        upcoming = self.tm.get_next_retry_due(labourer)
        state.due_read = self._monotonic()
        horizon = now + self.linger_seconds
        state.next_due = upcoming if upcoming is not None and upcoming <= horizon else math.inf
        if state.next_due <= now:
            state.next_due = now  # due already: requeued on the next pass

    def _follows(self, state: _Follow) -> bool:
        """Worth another pass: work came or went lately, or a retry is about to fall due."""
        return state.waits_for_retry or self._monotonic() - state.last_progress < self.wait_seconds

    def _pause(self, active: list[Labourer], states: dict[str, _Follow]) -> float:
        """Until the next pass: short while slots free up, longer while nothing moves, never a busy loop."""
        now = self.tm.clock.now()
        pauses = []
        for labourer in active:
            state = states[labourer.id]
            idle = self._monotonic() - state.last_progress
            pause = min(self.poll_max_seconds, max(self.poll_seconds, idle / 4))
            if not state.queued and state.waits_for_retry:
                # Until the known retry falls due, but never past the next read of the retry table's head
                assert state.next_due is not None
                pause = max(self.poll_seconds, min(state.next_due - now, self.poll_max_seconds))
            pauses.append(pause)
        return min(pauses)

    def _release(self, state: _Follow) -> bool:
        """Let the labourer go; True if a wake-up came after our last look at its queue (look again)."""
        if state.lease is None:
            return False
        lease, state.lease = state.lease, None
        woken = self.leases.release(lease, self.tm.clock.now(), self.lease_settle_seconds)
        return woken is not None and state.queue_read is not None and woken >= state.queue_read
