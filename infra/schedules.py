"""The schedules: EventBridge rules that run the Orchestrator and the Scavenger (default every minute).

EventBridge retries a delivery it could not make (throttling) for up to a minute, then leaves the
event in the failed-events queue: a later run replaces a missed one, so an older event is worthless.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from constructs import Construct

from infra.config import StackConfig
from infra.functions import ControlFunctions
from infra.lambda_function import SoswFunction
from infra.messaging import Messaging

__all__ = ["Schedules"]


class Schedules(Construct):
    """``schedules.rules["orchestrator"]`` and ``["scavenger"]``."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        functions: ControlFunctions,
        messaging: Messaging,
    ) -> None:
        super().__init__(scope, construct_id)
        self.messaging = messaging
        self.rules = {
            name: self._build_rule(name, functions.all[name], config.schedules[name], config.stage)
            for name in ("orchestrator", "scavenger")
        }

    def _build_rule(self, name: str, function: SoswFunction, expression: str, stage: str) -> events.Rule:
        rule = events.Rule(
            self,
            name.capitalize(),
            schedule=events.Schedule.expression(expression),
            description=f"sosw {stage}: runs the {name} ({expression})",
        )
        rule.add_target(
            targets.LambdaFunction(
                function.function,
                dead_letter_queue=self.messaging.failed_events,
                retry_attempts=2,
                max_event_age=Duration.seconds(60),
            )
        )
        return rule
