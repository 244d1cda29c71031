"""Scavenger Lambda (scheduled, and woken by failures): archives, retries, closes dead tasks and queues due
retries; then follows the jobs (failure past their tolerance, cancelling, their end event)."""

import os

from aws_lambda_powertools import Logger

from sosw.dispatch import labourers_of
from sosw.runtime import task_manager, waker
from sosw.scavenger import Scavenger

logger = Logger()


@logger.inject_lambda_context
def handler(event, context):
    tm = task_manager()
    remaining = lambda: context.get_remaining_time_in_millis() / 1000  # noqa: E731
    scavenger = Scavenger(tm, topic_arn=os.environ.get("SOSW_DEAD_LETTER_TOPIC_ARN"))
    report = scavenger.run(remaining, labourer_ids=labourers_of(event))
    if report.to_dispatch():
        waker("orchestrator").wake(report.to_dispatch())  # a retry due soon is waited for and started
    jobs = tm.track_jobs(remaining)
    return {"counts": {k: dict(v) for k, v in report.labourers.items()}, "errors": report.errors, "jobs": dict(jobs)}
