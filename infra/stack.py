"""The stack: composes the constructs, one per concern, in the order their references need.

tables -> layer -> messaging -> config parameter -> control functions -> jobs (bucket, Scheduler) ->
workers (and the Orchestrator's grants on them) -> dispatch wake-ups (the tasks stream) -> schedules -> monitoring.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from infra.config import StackConfig
from infra.dispatch import Dispatch
from infra.functions import ControlFunctions
from infra.jobs import Jobs
from infra.layer import SharedLayer
from infra.messaging import Messaging
from infra.monitoring import Monitoring
from infra.parameter import ConfigParameter
from infra.schedules import Schedules
from infra.tables import SoswTables
from infra.workers import Workers

__all__ = ["SoswStack"]


class SoswStack(Stack):
    """``SoswStack(app, config.stack_name, config=StackConfig.from_context(app.node))``"""

    def __init__(self, scope: Construct, construct_id: str, *, config: StackConfig, **kwargs: Any) -> None:
        kwargs.setdefault("description", f"sosw {config.stage}: Lambda workers orchestrated through DynamoDB")
        # A production stack can't be deleted by a stray `cdk destroy`; its tables are retained anyway.
        kwargs.setdefault("termination_protection", config.production)
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        self.tables = SoswTables(self, "Tables", config=config)
        self.layer = SharedLayer(self, "Layer", config=config)
        self.messaging = Messaging(self, "Messaging", config=config)
        self.parameter = ConfigParameter(self, "Config", config=config)
        self.functions = ControlFunctions(
            self,
            "Functions",
            config=config,
            layer=self.layer,
            tables=self.tables,
            messaging=self.messaging,
            parameter=self.parameter,
        )
        self.jobs = Jobs(
            self,
            "Jobs",
            config=config,
            layer=self.layer,
            tables=self.tables,
            messaging=self.messaging,
            parameter=self.parameter,
            functions=self.functions,
        )
        self.workers = Workers(self, "Workers", config=config, layer=self.layer, functions=self.functions)
        self.dispatch = Dispatch(self, "Dispatch", tables=self.tables, functions=self.functions)
        self.schedules = Schedules(self, "Schedules", config=config, functions=self.functions, messaging=self.messaging)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            functions=self.functions,
            messaging=self.messaging,
            streamed=bool(self.dispatch.mappings),
        )
        self._build_outputs()

    def _build_outputs(self) -> None:
        """What a user needs after deploying: where to send tasks, where reports and bad news go."""
        outputs = {
            "TasksTable": self.tables.schemas["tasks"].name,
            "ConfigParameter": self.parameter.name,
            "WorkerAssistantFunction": self.config.functions["worker_assistant"].name,
            "DeadTasksTopic": self.messaging.dead_tasks.topic_arn,
            "JobsBucket": self.jobs.bucket.bucket_name,
            "SchedulerFunction": self.config.functions["scheduler"].name,
            "AlarmTopic": self.messaging.alarms.topic_arn,
        }
        for key, value in outputs.items():
            CfnOutput(self, key, value=value)
