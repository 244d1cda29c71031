"""Orchestrator Lambda: claims and invokes what may run now, and follows the work while there is some.

Run by the minute schedule, by wake-ups ({"labourers": [...]}) and, relayed, by the tasks table's stream.
``{"follow": false}`` asks for one pass only (each labourer's free slots filled once), as sosw's runs.
"""

from aws_lambda_powertools import Logger

from sosw.dispatch import is_stream_batch, labourers_of
from sosw.orchestrator import Orchestrator
from sosw.runtime import task_manager, waker

logger = Logger()


@logger.inject_lambda_context
def handler(event, context):
    if is_stream_batch(event):
        # New tasks: relayed to a run of its own, so a long run never holds the stream's shard.
        labourers = labourers_of(event)
        return {"relayed": labourers, "sent": bool(labourers) and waker("relay").wake(labourers)}
    report = Orchestrator(task_manager()).run(
        lambda: context.get_remaining_time_in_millis() / 1000,
        labourer_ids=labourers_of(event),
        follow=not (isinstance(event, dict) and event.get("follow") is False),
    )
    if report.unfinished:
        waker("orchestrator").wake(report.unfinished)  # the rest goes on in a fresh invocation
    return {
        "invoked": report.invoked,
        "duration": report.duration,
        "passes": report.passes,
        "unfinished": report.unfinished,
        "errors": {k: v.error for k, v in report.labourers.items() if v.error},
    }
