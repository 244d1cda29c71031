"""Scheduler Lambda: a job (sosw's job event, or a job file uploaded to the jobs bucket) becomes its tasks."""

from aws_lambda_powertools import Logger

from sosw.job_scheduler import JobScheduler
from sosw.runtime import task_manager

logger = Logger()


@logger.inject_lambda_context
def handler(event, context):
    return JobScheduler(task_manager()).handle(event, lambda: context.get_remaining_time_in_millis() / 1000)
