"""Alarms and the dashboard.

Alarms (all notify the alarm topic, on ALARM and on OK):

- errors of each control function (any error in 5 minutes);
- silence of the scheduled functions: no successful run (invocations - errors < 1) for
  ``alarms.silence_periods`` schedule intervals in a row; missing data counts as silence;
- dead tasks: any message on the dead-task topic;
- queue age, per labourer: the oldest queued task waited longer than ``alarms.queue_age_seconds``
  (the Orchestrator's ``oldest_queued_age`` metric);
- failed events: anything in the failed-events queue (a lost report or a lost scheduled run);
- dispatch lagging: the Orchestrator got a stream record over a minute old (``IteratorAge``), so wake-ups
  from new and waiting tasks come later than the schedule would (only when the stack has streams).

The dashboard shows the control functions, then one row per labourer from the EMF metrics the
handlers emit (``sosw.metrics``: one dimension, ``labourer_id``), found with SEARCH: queued, oldest
queued age, running, invoked, archived, retried, dead, requeued, orchestrator duration and errors,
and the workers' outcomes and durations.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from constructs import Construct

from infra.config import StackConfig, silence_period_seconds
from infra.functions import ControlFunctions
from infra.messaging import Messaging

__all__ = ["Monitoring"]

FIVE_MINUTES = Duration.minutes(5)
_LABOURER_FLOW = ("invoked", "archived", "retried", "dead", "requeued")
_WORKER_OUTCOMES = ("worker_completed", "worker_failed", "worker_skipped")


class Monitoring(Construct):
    """``monitoring.alarms``: name -> Alarm; ``monitoring.dashboard`` (None when disabled)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        functions: ControlFunctions,
        messaging: Messaging,
        streamed: bool,
    ) -> None:
        """``streamed``: the Orchestrator reads tables' streams (no stream when every streamed table is adopted)."""
        super().__init__(scope, construct_id)
        self.config = config
        self.functions = functions
        self.messaging = messaging
        self.action = actions.SnsAction(messaging.alarms)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self._build_error_alarms()
        self._build_silence_alarms()
        self._build_dead_task_alarm()
        self._build_queue_age_alarms()
        self._build_failed_events_alarm()
        if streamed:
            self._build_dispatch_lag_alarm()
        self.dashboard = self._build_dashboard() if config.dashboard else None

    def _alarm(self, key: str, **props: object) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(self, key, alarm_name=f"sosw-{self.config.stage}-{key}", **props)  # type: ignore[arg-type]
        alarm.add_alarm_action(self.action)
        alarm.add_ok_action(self.action)
        self.alarms[key] = alarm
        return alarm

    # ------------------------------------------------------------------ alarms

    def _build_error_alarms(self) -> None:
        for name, function in self.functions.all.items():
            self._alarm(
                f"{name}-errors",
                alarm_description=f"The {name} function failed (any error in 5 minutes); see its log group.",
                metric=function.function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
                threshold=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )

    def _build_silence_alarms(self) -> None:
        for name in ("orchestrator", "scavenger"):
            function = self.functions.all[name].function
            period = Duration.seconds(silence_period_seconds(self.config.schedules[name]))
            successes = cloudwatch.MathExpression(
                expression="FILL(invocations, 0) - FILL(errors, 0)",
                using_metrics={
                    "invocations": function.metric_invocations(period=period, statistic="Sum"),
                    "errors": function.metric_errors(period=period, statistic="Sum"),
                },
                label="successful runs",
                period=period,
            )
            self._alarm(
                f"{name}-silent",
                alarm_description=(
                    f"No successful {name} run for {self.config.silence_periods} schedule periods: tasks are not "
                    f"being {'invoked' if name == 'orchestrator' else 'archived or retried'}."
                ),
                metric=successes,
                threshold=1,
                comparison_operator=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                evaluation_periods=self.config.silence_periods,
                treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
            )

    def _build_dead_task_alarm(self) -> None:
        self._alarm(
            "dead-tasks",
            alarm_description="Tasks were closed as dead (max_attempts reached or a never-retry error); "
            "the dead-task topic has one message per task.",
            metric=self.messaging.dead_tasks.metric_number_of_messages_published(period=FIVE_MINUTES, statistic="Sum"),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _build_queue_age_alarms(self) -> None:
        for worker in self.config.workers:
            self._alarm(
                f"{worker.name}-queue-age",
                alarm_description=(
                    f"The oldest queued task of {worker.name} has waited more than {self.config.queue_age_seconds} s: "
                    "the labourer is unhealthy, at its cap, rate limited, or the Orchestrator is not running."
                ),
                metric=cloudwatch.Metric(
                    namespace=self.config.metrics_namespace,
                    metric_name="oldest_queued_age",
                    dimensions_map={"labourer_id": worker.name},
                    statistic="Maximum",
                    period=FIVE_MINUTES,
                ),
                threshold=self.config.queue_age_seconds,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                evaluation_periods=1,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )

    def _build_failed_events_alarm(self) -> None:
        self._alarm(
            "failed-events",
            alarm_description="An asynchronous invocation of a control function failed for good, or a schedule "
            "event was not delivered: the record is in the failed-events queue.",
            metric=self.messaging.failed_events.metric_approximate_number_of_messages_visible(
                period=FIVE_MINUTES, statistic="Maximum"
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    # ------------------------------------------------------------------ dashboard

    def _build_dispatch_lag_alarm(self) -> None:
        # Past a minute, the minute schedule starts what the stream should have: wake-ups add nothing then
        self._alarm(
            "dispatch-lagging",
            alarm_description=(
                "The Orchestrator got a tasks or retry table stream record over 60 s old: wake-ups lag "
                "(its reserved concurrency is spent, or it fails); tasks start on the minute schedule meanwhile."
            ),
            metric=self.functions.orchestrator.function.metric("IteratorAge", period=FIVE_MINUTES, statistic="Maximum"),
            threshold=60_000,  # milliseconds
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def _search(self, labourer: str, metric: str, statistic: str = "Sum") -> cloudwatch.MathExpression:
        namespace = self.config.metrics_namespace
        query = f'{{"{namespace}",labourer_id}} MetricName="{metric}" labourer_id="{labourer}"'
        return cloudwatch.MathExpression(
            expression=f"SEARCH('{query}', '{statistic}', 60)",
            using_metrics={},
            label=metric if statistic == "Sum" else f"{metric} ({statistic})",
            period=Duration.minutes(1),
        )

    def _build_dashboard(self) -> cloudwatch.Dashboard:
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"sosw-{self.config.stage}")
        dashboard.add_widgets(*self._control_widgets())
        for worker in self.config.workers:
            dashboard.add_widgets(*self._labourer_widgets(worker.name))
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(alarms=list(self.alarms.values()), title="Alarms", width=24, height=4)
        )
        return dashboard

    def _control_widgets(self) -> list[cloudwatch.IWidget]:
        widgets: list[cloudwatch.IWidget] = []
        for name in ("orchestrator", "scavenger"):
            function = self.functions.all[name].function
            widgets.append(
                cloudwatch.GraphWidget(
                    title=f"{name}: runs, errors and duration",
                    left=[function.metric_invocations(statistic="Sum"), function.metric_errors(statistic="Sum")],
                    right=[function.metric_duration(statistic="Maximum")],
                    width=6,
                )
            )
        widgets.append(
            cloudwatch.GraphWidget(
                title="reports: WorkerAssistant and failure handler",
                left=[
                    self.functions.worker_assistant.function.metric_invocations(
                        statistic="Sum", label="assistant calls"
                    ),
                    self.functions.worker_assistant.function.metric_errors(statistic="Sum", label="assistant errors"),
                    self.functions.failure_handler.function.metric_invocations(
                        statistic="Sum", label="failures handled"
                    ),
                    self.functions.failure_handler.function.metric_errors(statistic="Sum", label="handler errors"),
                ],
                width=6,
            )
        )
        widgets.append(
            cloudwatch.GraphWidget(
                title="dead tasks and failed events",
                left=[
                    self.messaging.dead_tasks.metric_number_of_messages_published(statistic="Sum", label="dead tasks"),
                    self.messaging.failed_events.metric_approximate_number_of_messages_visible(
                        statistic="Maximum", label="failed events"
                    ),
                ],
                width=6,
            )
        )
        return widgets

    def _labourer_widgets(self, labourer: str) -> list[cloudwatch.IWidget]:
        return [
            cloudwatch.GraphWidget(
                title=f"{labourer}: invoked, archived, retried, dead, requeued",
                left=[self._search(labourer, m) for m in _LABOURER_FLOW],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title=f"{labourer}: running and worker outcomes",
                left=[self._search(labourer, "running", "Maximum")],
                right=[self._search(labourer, m) for m in _WORKER_OUTCOMES],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title=f"{labourer}: queued, oldest queued age (s)",
                left=[self._search(labourer, "queue_length", "Maximum")],
                right=[self._search(labourer, "oldest_queued_age", "Maximum")],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title=f"{labourer}: orchestrator duration (s) and errors",
                left=[self._search(labourer, "orchestrator_duration", "Maximum")],
                right=[self._search(labourer, "orchestrator_errors")],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title=f"{labourer}: worker duration (s)",
                left=[
                    self._search(labourer, "worker_duration", "Average"),
                    self._search(labourer, "worker_duration", "Maximum"),
                ],
                width=8,
            ),
        ]
