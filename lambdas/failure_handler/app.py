"""On-failure destination of every worker: crashes and timeouts become failure reports."""

from aws_lambda_powertools import Logger

from sosw.failure_destination import report_failure_record
from sosw.runtime import task_manager, waker

logger = Logger()


@logger.inject_lambda_context
def handler(event, context):
    result = report_failure_record(task_manager(), event)
    if result and result.labourer_id:
        waker("scavenger").wake([result.labourer_id])  # the task waits for its retry at once
    return {"task_id": result.task_id, "outcome": result.outcome.value, "reason": result.reason}
