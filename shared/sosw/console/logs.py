"""A task's attempts, each with its outcome and its worker's log lines: ``sosw show TASK_ID --logs``.

The worker's log lines are found by the ``task_id`` and ``attempt`` that :class:`sosw.worker.Worker`
puts on every line through Powertools:

- locally, in the local Lambda endpoint's log file of the worker's function;
- on AWS, with one CloudWatch Logs Insights query per attempt on the worker's log group (the one
  Lambda says the function logs to), over the attempt's time window. A window older than the log
  group's retention is not queried: its logs have expired, and the answer says so.

The task keeps the times of its current attempt only (claim, report, closing), so the last attempt's
window is tight, and the earlier ones share the window from the task's creation to the last claim.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sosw.labourer import function_name

__all__ = [
    "Attempt",
    "CloudWatchLogs",
    "LocalLogs",
    "LogLine",
    "attempts_of",
    "insights_query",
    "task_state",
]

#: Log lines may trail the task's recorded times a little (a report is sent before "Task completed" is
#: logged; clocks of two machines differ): windows are widened by this much on each side.
SLACK_SECONDS = 60.0
DEFAULT_INVOCATION_DELTA = 31_557_600
#: The most lines one query returns (Logs Insights' own cap).
QUERY_LIMIT = 10_000


@dataclass
class LogLine:
    timestamp: str | None
    level: str | None
    message: str
    record: dict[str, Any] | None  # the whole JSON log record

    def text(self) -> str:
        extra = ""
        if self.record:
            error = self.record.get("exception_name")
            if error:
                extra = f" ({error})"
        return f"{self.timestamp or '-'}  {(self.level or '-'):<7} {self.message}{extra}"

    def as_dict(self) -> dict[str, Any]:
        return {"timestamp": self.timestamp, "level": self.level, "message": self.message, "record": self.record}


@dataclass
class Attempt:
    number: int
    start: float
    end: float
    outcome: str = ""
    lines: list[LogLine] = field(default_factory=list)
    note: str | None = None  # why there are no lines (expired logs, no log group, ...)
    query: str | None = None  # the Logs Insights query (AWS)

    def as_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.number,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "outcome": self.outcome,
            "note": self.note,
            "query": self.query,
            "lines": [line.as_dict() for line in self.lines],
        }


class LogSource(Protocol):
    description: str

    def lines(self, function: str, task_id: str, attempt: Attempt) -> None:
        """Fill ``attempt.lines`` (or ``attempt.note``) with the worker's lines of that attempt."""
        ...


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="seconds")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _invoked_at(task: Mapping[str, Any], config: Mapping[str, Any]) -> float | None:
    """When the current attempt was claimed: its greenfield less the invocation delta, if it is one."""
    greenfield = _number(task.get("greenfield"))
    created = _number(task.get("created_at"))
    if greenfield is None or created is None or not task.get("attempts"):
        return None
    invoked = greenfield - float(config.get("greenfield_invocation_delta", DEFAULT_INVOCATION_DELTA))
    # A queued greenfield (a retry back in the queue) lies far below the task's creation: no claim time there.
    return invoked if invoked >= created - 1 else None


def task_state(where: str, task: Mapping[str, Any], config: Mapping[str, Any], now: float) -> str:
    """The task's state in words, from where it is and what it carries."""
    error = task.get("last_error") or {}
    error_text = f"{error.get('type', '')}: {error.get('message', '')}" if error else ""
    if where == "closed":
        if str(task.get("labourer_id_task_status", "")).endswith("_1"):
            return "completed"
        return f"dead ({error_text})" if error_text else "dead"
    if where == "waiting":
        retry = _number(task.get("desired_launch_time"))
        when = f", due again at {_iso(retry)}" if retry else ""
        return f"waiting for a retry ({error_text or 'no report: expired'}{when})"
    if task.get("completed_at") is not None:
        return "completed (closing)"
    if task.get("failed_at") is not None:
        return f"failed ({error_text})" if error_text else "failed"
    if _invoked_at(task, config) is not None:
        return "running"
    return "queued"


def attempts_of(
    where: str, task: Mapping[str, Any], config: Mapping[str, Any], now: float
) -> tuple[str, list[Attempt]]:
    """The task's state and its attempts with the time window each one's log lines lie in."""
    state = task_state(where, task, config, now)
    count = int(task.get("attempts") or 0)
    created = _number(task.get("created_at")) or now
    ended = next(
        (_number(task.get(k)) for k in ("closed_at", "completed_at", "failed_at") if _number(task.get(k))), None
    )
    end = min(now, (ended or now) + SLACK_SECONDS)
    invoked = _invoked_at(task, config)
    attempts = []
    for number in range(1, count + 1):
        if invoked is not None and number == count:
            start, stop = invoked - SLACK_SECONDS, end
        elif invoked is not None:
            start, stop = created - SLACK_SECONDS, invoked + SLACK_SECONDS
        else:
            start, stop = created - SLACK_SECONDS, end
        attempts.append(Attempt(number, start, max(stop, start)))
    return state, attempts


def last_outcome(where: str, task: Mapping[str, Any]) -> str | None:
    """How the task's current attempt ended, from what the task carries; None while it runs (or never ran)."""
    error = task.get("last_error") or {}
    error_text = f"{error.get('type', '')}: {error.get('message', '')}" if error else ""
    if where == "closed":
        if str(task.get("labourer_id_task_status", "")).endswith("_1"):
            return "completed"
        return f"failed ({error_text}); the task is dead" if error_text else "the task is dead"
    if where == "waiting":
        return f"failed ({error_text})" if error_text else "no report (expired)"
    if task.get("completed_at") is not None:
        return "completed"
    if task.get("failed_at") is not None:
        return f"failed ({error_text})" if error_text else "failed"
    return None


def settle_outcomes(state: str, attempts: list[Attempt], last: str | None = None) -> None:
    """Each attempt's outcome: the last one's from the task when it has ended, the others' from their lines."""
    for attempt in attempts:
        messages = {line.message: line for line in attempt.lines}
        if attempt is attempts[-1] and last:
            attempt.outcome = last
        elif "Task completed" in messages:
            attempt.outcome = "completed"
        elif "Task failed" in messages:
            record = messages["Task failed"].record or {}
            attempt.outcome = f"failed ({record.get('exception_name', 'error')})"
        elif "Delivery not run" in messages:
            record = messages["Delivery not run"].record or {}
            attempt.outcome = f"not run ({record.get('reason') or record.get('outcome') or 'refused'})"
        elif attempt is attempts[-1]:
            attempt.outcome = state
        else:
            attempt.outcome = "no report in its logs (it timed out, crashed, or its delivery came too late)"


def parse_line(text: str) -> LogLine | None:
    """A JSON log line (Powertools, or Lambda's JSON format); None for anything else."""
    text = text.strip()
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or "_aws" in record:  # an EMF metrics document, not a log line
        return None
    message = record.get("message")
    if isinstance(message, dict):  # Lambda's JSON format wraps a structured message
        record = {**message, **{k: v for k, v in record.items() if k != "message"}}
        message = message.get("message", "")
    level = record.get("level")
    return LogLine(
        timestamp=str(record.get("timestamp")) if record.get("timestamp") is not None else None,
        level=str(level) if level is not None else None,
        message=str(message if message is not None else text),
        record=record,
    )


def _belongs(line: LogLine, task_id: str, attempt: int) -> bool:
    record = line.record or {}
    return str(record.get("task_id")) == task_id and record.get("attempt") in (attempt, str(attempt))


class LocalLogs:
    """The local Lambda endpoint's log files: ``<log_dir>/<function>.log``, every process of a function."""

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self.description = f"local log files in {self.log_dir}"

    def lines(self, function: str, task_id: str, attempt: Attempt) -> None:
        path = self.log_dir / f"{function}.log"
        if not path.is_file():
            attempt.note = f"no log file {path.name}: the worker has not run locally"
            return
        with path.open(errors="replace") as stream:
            parsed = (parse_line(text) for text in stream)
            attempt.lines = [line for line in parsed if line and _belongs(line, task_id, attempt.number)]


def insights_query(task_id: str, attempt: int) -> str:
    """The Logs Insights query of one attempt's lines (Powertools puts task_id and attempt on each)."""
    quoted = json.dumps(task_id)  # a task id is a plain string; JSON quoting escapes quotes and backslashes
    return (
        "fields @timestamp, @message\n"
        f"| filter task_id = {quoted} and attempt = {int(attempt)}\n"
        "| sort @timestamp asc\n"
        f"| limit {QUERY_LIMIT}"
    )


class CloudWatchLogs:
    """One Logs Insights query per attempt, on the log group the worker's function logs to."""

    def __init__(
        self,
        logs_client: Any = None,
        lambda_client: Any = None,
        *,
        log_group: str | None = None,
        timeout: float = 60.0,
        poll: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time,
    ) -> None:
        import boto3

        self.logs = logs_client or boto3.client("logs")
        self.lambda_ = lambda_client or boto3.client("lambda")
        self.fixed_group = log_group
        self.timeout = timeout
        self.poll = poll
        self._sleep = sleep
        self._now = now
        self.description = "CloudWatch Logs Insights"
        self._groups: dict[str, tuple[str, int | None] | None] = {}

    def log_group(self, function: str) -> tuple[str, int | None] | None:
        """The function's log group and its retention in days (None: kept forever); None if it doesn't exist."""
        if function in self._groups:
            return self._groups[function]
        name = self.fixed_group
        if name is None:
            config = self.lambda_.get_function_configuration(FunctionName=function)
            # Lambda's advanced logging names the group; without it, Lambda's default group.
            name = (config.get("LoggingConfig") or {}).get("LogGroup") or f"/aws/lambda/{config['FunctionName']}"
        groups = self.logs.describe_log_groups(logGroupNamePrefix=name).get("logGroups", [])
        match = next((g for g in groups if g.get("logGroupName") == name), None)
        found = None if match is None else (name, match.get("retentionInDays"))
        self._groups[function] = found
        if found is None:
            self.description = f"CloudWatch Logs Insights (log group {name} does not exist)"
        else:
            self.description = f"CloudWatch Logs Insights on {name}"
        return found

    def lines(self, function: str, task_id: str, attempt: Attempt) -> None:
        group = self.log_group(function)
        if group is None:
            attempt.note = f"the worker's log group does not exist: {function} has not logged yet"
            return
        name, retention = group
        if retention is not None and attempt.end < self._now() - retention * 86400:
            attempt.note = (
                f"its logs have expired: log group {name} keeps {retention} days, and the attempt ended "
                f"{_iso(attempt.end)}"
            )
            return
        attempt.query = insights_query(task_id, attempt.number)
        query_id = self.logs.start_query(
            logGroupName=name,
            startTime=int(attempt.start),
            endTime=int(attempt.end) + 1,
            queryString=attempt.query,
            limit=QUERY_LIMIT,
        )["queryId"]
        deadline = self._now() + self.timeout
        while True:
            result = self.logs.get_query_results(queryId=query_id)
            if result["status"] not in ("Scheduled", "Running"):
                break
            if self._now() > deadline:
                attempt.note = f"the query was still running after {self.timeout:g} s"
                return
            self._sleep(self.poll)
        if result["status"] != "Complete":
            attempt.note = f"the query ended {result['status']}"
            return
        attempt.lines = [line for line in _rows(result.get("results", [])) if line]
        if not attempt.lines and retention is not None and attempt.start < self._now() - retention * 86400:
            attempt.note = f"no lines: part of its window is past log group {name}'s {retention} days"


def _rows(results: Iterable[list[dict[str, str]]]) -> Iterable[LogLine | None]:
    for row in results:
        fields = {f.get("field"): f.get("value") for f in row}
        message = fields.get("@message")
        if message is None:
            continue
        line = parse_line(message) or LogLine(None, None, str(message).strip(), None)
        if line.timestamp is None and fields.get("@timestamp") is not None:
            line.timestamp = str(fields["@timestamp"])
        yield line


def task_logs(
    where: str, task: Mapping[str, Any], config: Mapping[str, Any], source: LogSource, now: float | None = None
) -> tuple[str, list[Attempt]]:
    """The task's state and its attempts, each with its worker's log lines from ``source``."""
    now = time.time() if now is None else now
    state, attempts = attempts_of(where, task, config, now)
    labourer = str(task.get("labourer_id"))
    settings = (config.get("labourers") or {}).get(labourer, {})
    function = function_name(str(settings.get("arn", labourer)))
    for attempt in attempts:
        source.lines(function, str(task["task_id"]), attempt)
    settle_outcomes(state, attempts, last_outcome(where, task))
    return state, attempts
