"""Orchestrator Lambda (scheduled every minute): claims and invokes what may run now."""

from aws_lambda_powertools import Logger

from sosw.orchestrator import Orchestrator
from sosw.runtime import task_manager

logger = Logger()


@logger.inject_lambda_context
def handler(event, context):
    report = Orchestrator(task_manager()).run(lambda: context.get_remaining_time_in_millis() / 1000)
    return {
        "invoked": report.invoked,
        "duration": report.duration,
        "errors": {k: v.error for k, v in report.labourers.items() if v.error},
    }
