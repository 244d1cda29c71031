"""WorkerAssistant Lambda: workers report start, completion and failure here (sosw's contract)."""

from aws_lambda_powertools import Logger

from sosw.runtime import task_manager, waker
from sosw.worker_assistant import WorkerAssistant

logger = Logger()


@logger.inject_lambda_context
def handler(event, context):
    assistant = WorkerAssistant(task_manager(), orchestrator=waker("orchestrator"), scavenger=waker("scavenger"))
    return assistant.handle(event, lambda: context.get_remaining_time_in_millis() / 1000)
