"""docs/reference/events.md: the events the stack publishes are the ones its code builds, field for field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sosw.jobs.events import EVENT_SOURCE, end_event
from sosw.jobs.model import END_EVENTS, Job, JobCounts, JobState
from sosw.scavenger import Scavenger

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "events.md"


def _section(title: str) -> str:
    text = PAGE.read_text()
    return text[text.index(f"## {title}") :].split("\n## ", 1)[0]


def _json_blocks(section: str) -> list[Any]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]


def _table_fields(section: str) -> set[str]:
    rows = [line.split(" | ")[0] for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`([^`]+)`", row)}


def test_the_job_end_event_on_the_page_is_what_the_code_publishes():
    # Given the page's example, and the job it describes
    example, rule = _json_blocks(_section("A job's end (EventBridge)"))
    job = Job(
        job_id="brittle-1",
        labourer_id="brittle",
        state=JobState.FAILED,
        total=500,
        created=500,
        tolerated_failure_percentage=5,
        shards=32,
        created_at=1796047698.727,
        fingerprint="f",
        source="payloads",
        failed_at=1796047719.385,
        ended_at=1796047723.703,
    )
    # When the code builds that job's end event
    detail_type, detail = end_event(job, JobCounts(completed=0, dead=40, cancelled=460))
    # Then it is the page's, field for field, and its table explains every field
    assert {"source": EVENT_SOURCE, "detail-type": detail_type, "detail": detail} == example
    assert _table_fields(_section("A job's end (EventBridge)")) == set(detail)
    # and the page's rule matches every end event
    assert rule["source"] == [EVENT_SOURCE] and set(rule["detail-type"]) == set(END_EVENTS.values())


def test_the_dead_task_notification_on_the_page_is_what_the_scavenger_publishes(make_manager):
    class RecordingSns:
        def __init__(self) -> None:
            self.sent: list[dict[str, Any]] = []

        def publish(self, **kwargs: Any) -> dict[str, str]:
            self.sent.append(kwargs)
            return {"MessageId": str(len(self.sent))}

    # Given a task that failed its last attempt (beta: max_attempts 2)
    manager = make_manager()
    beta = manager.register_labourers()[1]
    task = manager.create_task(beta, payload={})
    manager.mark_task_invoked(beta, task)
    claimed = manager.mark_task_invoked(beta, task, check_running=False)
    manager.mark_task_failed(task["task_id"], attempt=claimed["attempts"], error_type="RuntimeError", error_message="x")
    # When the Scavenger closes it as dead
    sns = RecordingSns()
    Scavenger(make_manager(), sns_client=sns, topic_arn="arn:aws:sns:us-east-1:123456789012:dead").run()
    # Then it published one message with the page's subject, attribute and fields
    (sent,) = sns.sent
    section = _section("A dead task (SNS)")
    (example,) = _json_blocks(section)
    message = json.loads(sent["Message"])
    assert set(message) == set(example) == _table_fields(section)
    assert set(message["last_error"]) == set(example["last_error"]) == {"type", "message"}
    assert message["attempts"] == 2 and message["labourer_id"] == beta.id
    assert sent["Subject"] == f"sosw: task dead ({beta.id})" and "`sosw: task dead (<labourer>)`" in section
    assert set(sent["MessageAttributes"]) == {"labourer_id"} and "`labourer_id` lets a subscription" in section
