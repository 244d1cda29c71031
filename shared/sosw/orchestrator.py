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
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit

from sosw import aws
from sosw.errors import ConfigError, InvokeError
from sosw.labourer import Labourer
from sosw.leases import Lease, LeaseStore
from sosw.managers.task import InvokeResult, TaskManager
from sosw.metrics import put_labourer_metric, put_labourer_metrics
from sosw.processors import SoswProcessor

logger = Logger(child=True)

DEFAULT_COEFFICIENTS = {0: 0, 1: 0, 2: 0.5, 3: 0.75, 4: 1}


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

    @property
    def invoked(self) -> int:
        return sum(run.outcomes[InvokeResult.INVOKED.value] for run in self.labourers.values())


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
        self.lease_settle_seconds = float(config.get("orchestrator_lease_settle_seconds", 2))
        self.coefficients = self._coefficients(config.get("invocation_number_coefficient", DEFAULT_COEFFICIENTS))
        self.owner = owner or uuid.uuid4().hex
        self.leases = LeaseStore(task_manager.dynamo_db_client, config["sosw_orchestrator_leases_table"])
        self._monotonic = monotonic

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

    def run(self, remaining_seconds: Callable[[], float] | None = None) -> OrchestratorReport:
        """Orchestrate every labourer once. ``remaining_seconds`` is the Lambda's time left (None: no limit)."""
        started = self._monotonic()
        report = OrchestratorReport()
        # The run's windows for every labourer; health is read per labourer, inside its own try, so one
        # labourer's bad metric config or CloudWatch error doesn't stop the others.
        ecology = self.tm.ecology_client
        ecology.register_task_manager(self.tm)
        labourers = self.tm.open_run_window()
        with ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="invoke") as pool:
            for labourer in labourers:
                run = report.labourers.setdefault(labourer.id, LabourerRun(labourer.id))
                try:
                    self._orchestrate(labourer, run, pool, remaining_seconds)
                except Exception as exc:  # one labourer's failure must not stop the others
                    run.error = f"{type(exc).__name__}: {exc}"
                    logger.exception("Orchestrating a labourer failed", extra={"labourer_id": labourer.id})
        report.duration = self._monotonic() - started
        for run in report.labourers.values():
            counts = {
                "invoked": run.outcomes[InvokeResult.INVOKED.value],
                "running": run.running,
                "invocations_released": run.outcomes["released"],
                "orchestrator_errors": int(bool(run.error)),
            }
            if run.queue_length is not None:
                counts["queue_length"] = run.queue_length
            put_labourer_metrics(run.labourer_id, counts)
            if run.oldest_queued_age is not None:
                put_labourer_metric("oldest_queued_age", run.oldest_queued_age, run.labourer_id, MetricUnit.Seconds)
            put_labourer_metric("orchestrator_duration", report.duration, run.labourer_id, MetricUnit.Seconds)
        logger.info("Orchestrator run done", extra={"duration": report.duration, "invoked": report.invoked})
        return report

    def _invoke_next(
        self,
        labourer: Labourer,
        lease: Lease,
        desired: int,
        run: LabourerRun,
        pool: ThreadPoolExecutor,
        remaining_seconds: Callable[[], float] | None,
        now: float,
    ) -> None:
        """Take ``desired`` tasks from the head of the queue and invoke them in parallel."""
        tasks = self.tm.get_next_for_labourer(labourer, cnt=desired)
        # The rate-limit window is charged before invoking, so a crash can't let the next run exceed it.
        self.leases.record_invocations(lease, len(tasks), now)

        def invoke(task: dict[str, Any]) -> str:
            # Never claim past the Lambda's time or past our lease: another orchestrator may count by then.
            if self._time_left(remaining_seconds) <= 0 or self.tm.clock.now() >= lease.until - self.safety_seconds:
                return "not_started"
            try:
                return self.tm.invoke_task(labourer, task=task).value
            except InvokeError as exc:
                return "released" if exc.released else "uncertain"
            except Exception:  # every invocation finishes before the lease is released
                logger.exception(
                    "Invoking a task failed", extra={"labourer_id": labourer.id, "task_id": task.get("task_id")}
                )
                return "error"

        for outcome in pool.map(invoke, tasks):
            run.outcomes[outcome] += 1

    def _time_left(self, remaining_seconds: Callable[[], float] | None) -> float:
        return math.inf if remaining_seconds is None else remaining_seconds() - self.safety_seconds

    def _orchestrate(
        self,
        labourer: Labourer,
        run: LabourerRun,
        pool: ThreadPoolExecutor,
        remaining_seconds: Callable[[], float] | None,
    ) -> None:
        if self._time_left(remaining_seconds) <= 0:
            run.skipped_reason = "no time left in this run"
            return
        now = self.tm.clock.now()
        lease_seconds = min(60.0, max(self._time_left(remaining_seconds), 1.0)) if remaining_seconds else 60.0
        lease = self.leases.acquire(labourer.id, self.owner, now, lease_seconds)
        if lease is None:
            run.skipped_reason = "another orchestrator holds this labourer"
            logger.info("Labourer leased by another orchestrator", extra={"labourer_id": labourer.id})
            return
        try:
            run.health = self.tm.ecology_client.get_labourer_status(labourer)
            labourer.set_custom_attribute("health", run.health)
            run.running = self.tm.get_count_of_running_tasks_for_labourer(labourer)
            cap = math.floor(labourer.max_simultaneous_invocations * self.coefficients[run.health])
            desired = max(0, cap - run.running)
            allowed = lease.invocations_left(labourer.max_invocations_per_minute, now)
            if allowed is not None:
                desired = min(desired, allowed)
            run.desired = desired
            if desired > 0:
                self._invoke_next(labourer, lease, desired, run, pool, remaining_seconds, now)
            snapshot = self.tm.get_queue_snapshot(labourer)
            run.queue_length = int(snapshot["queue_length"] or 0)
            run.oldest_queued_age = snapshot["oldest_queued_age"]
            logger.info(
                "Labourer orchestrated",
                extra={
                    "labourer_id": labourer.id,
                    "health": run.health,
                    "running": run.running,
                    "desired": desired,
                    "outcomes": dict(run.outcomes),
                    "queue_length": run.queue_length,
                },
            )
        finally:
            self.leases.release(lease, self.tm.clock.now(), self.lease_settle_seconds)
