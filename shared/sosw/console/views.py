"""The CLI's listings as rows and columns: what ``status``, ``dead`` and ``show`` print, in every format.

Each view builds plain rows (the json/jsonl records, whose shapes ``schemas/`` fixes) and the
columns a table shows them with, so the same data reaches people and scripts.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sosw.console.output import Column, Output

__all__ = [
    "DEAD_COLUMNS",
    "RATE_COLUMN",
    "STATUS_COLUMNS",
    "ago",
    "attempt_lines",
    "dead_row",
    "iso",
    "read_status",
    "show_lines",
    "status_row",
    "watch_status",
]

STATE_FIELDS = ("queued", "running", "expired", "failed", "waiting", "completed", "archived", "dead")


def _age(value: Any) -> str:
    return "-" if value is None else f"{value:.0f} s"


def _rate(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def iso(epoch: Any) -> str | None:
    """An epoch time as ISO 8601 UTC (seconds), or None."""
    if not isinstance(epoch, int | float):
        return None
    return datetime.fromtimestamp(float(epoch), tz=UTC).isoformat(timespec="seconds")


STATUS_COLUMNS = (
    Column("labourer", align="left"),
    Column("queued"),
    Column("running", short="run"),
    Column("expired", short="exp"),
    Column("failed", short="fail"),
    Column("waiting", short="wait"),
    Column("completed", short="cmpl"),
    Column("archived", short="arch"),
    Column("dead"),
    Column("oldest_queued_age", "oldest queued", short="oldest", format=_age),
)
RATE_COLUMN = Column("completed_per_minute", "completed/min", short="/min", format=_rate)


def status_row(labourer_id: str, counts: Mapping[str, Any]) -> dict[str, Any]:
    """One labourer's counts as a record: ``archived`` is the count of closed completed tasks."""
    row: dict[str, Any] = {"labourer": labourer_id}
    for name in STATE_FIELDS:
        row[name] = int(counts["closed_completed" if name == "archived" else name])
    age = counts.get("oldest_queued_age")
    row["oldest_queued_age"] = None if age is None else round(float(age), 3)
    row["complete"] = bool(counts.get("complete", True))  # False: a count stopped at its page budget
    return row


def read_status(tm: Any, labourer: str | None) -> list[dict[str, Any]]:
    labourers = tm.open_run_window()
    if labourer:
        wanted = tm.get_labourer(labourer)  # an unknown labourer is a clear error
        labourers = [lab for lab in labourers if lab.id == wanted.id]
    return [status_row(lab.id, tm.get_labourer_counts(lab)) for lab in labourers]


def watch_status(
    tm: Any,
    out: Output,
    *,
    labourer: str | None = None,
    interval: float = 2.0,
    window: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
    monotonic: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> int:
    """Refresh the status every ``interval`` seconds until Ctrl-C, with completed tasks per minute.

    The rate is the growth of completed + archived tasks (a completion is counted once, whether the
    Scavenger has archived it yet or not) over the last ``window`` seconds of samples. On a terminal
    the table is redrawn in place; elsewhere each refresh is printed after the last (json: one
    document each, jsonl: one line per labourer each), so a script can follow it.
    """
    history: dict[str, deque[tuple[float, int]]] = {}
    try:
        while True:
            now = monotonic()
            rows = read_status(tm, labourer)
            at = iso(wall())
            for row in rows:
                samples = history.setdefault(row["labourer"], deque())
                samples.append((now, row["completed"] + row["archived"]))
                while len(samples) > 2 and now - samples[1][0] >= window:
                    samples.popleft()
                first_at, first = samples[0]
                row["completed_per_minute"] = (
                    None if now <= first_at else round((samples[-1][1] - first) * 60 / (now - first_at), 2)
                )
                row["at"] = at
            _print_watch(out, rows, at, interval)
            sleep(interval)
    except KeyboardInterrupt:
        return 0


def _print_watch(out: Output, rows: list[dict[str, Any]], at: str | None, interval: float) -> None:
    columns = (*STATUS_COLUMNS, RATE_COLUMN)
    if out.format != "table":
        out.rows("labourers", rows, columns, meta={"at": at})
        return
    title = f"sosw status at {at}, every {interval:g} s (Ctrl-C stops)"
    lines = [title, *out.table_lines(rows, columns)] if rows else [title, "no labourers"]
    if out.tty:
        out.stream.write("\x1b[H\x1b[J")  # redraw in place: cursor home, clear the screen below
    else:
        lines.append("")  # one refresh after the other, a blank line between
    out.write("\n".join(lines))


def ago(when: Any, now: Callable[[], float] = time.time) -> str:
    """How long ago an ISO 8601 time was, in the largest whole unit: "42 s", "17 min", "3 h", "5 d"."""
    if not isinstance(when, str):
        return "-"
    seconds = max(0.0, now() - datetime.fromisoformat(when).timestamp())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f} {unit}"
    return f"{seconds:.0f} s"


DEAD_COLUMNS = (
    Column("task_id", "task", align="left"),
    Column("labourer_id", "labourer", align="left"),
    Column("attempts", short="att"),
    # How long ago, which fits beside a 32-character task id; json has the time itself.
    Column("closed_at", "closed ago", short="closed", format=ago),
    Column("error", align="left", shrink=True),
)


def dead_row(task: Mapping[str, Any]) -> dict[str, Any]:
    error = task.get("last_error") or {}
    return {
        "task_id": task["task_id"],
        "labourer_id": task.get("labourer_id"),
        "attempts": task.get("attempts"),
        "closed_at": iso(task.get("closed_at")),
        "error_type": error.get("type"),
        "error_message": error.get("message"),
        "error": f"{error.get('type', '')}: {error.get('message', '')}" if error else "",
    }


def show_lines(where: str, task: Mapping[str, Any]) -> list[str]:
    """A task for people: where it is, then its fields (times as UTC), the payload last."""
    lines = [f"task {task.get('task_id')} ({task.get('labourer_id')}): {where}"]
    for key in sorted(task):
        if key in ("task_id", "labourer_id", "payload"):
            continue
        value = task[key]
        if key.endswith("_at") and iso(value):
            value = f"{iso(value)} ({value})"
        lines.append(f"  {key}: {_text(value)}")
    if "payload" in task:
        lines.append(f"  payload: {_text(task['payload'])}")
    return lines


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def attempt_lines(task: Mapping[str, Any], state: str, attempts: list[Any], source: str) -> list[str]:
    """``show --logs`` for people: the task's state, then each attempt, its outcome and its lines."""
    count = len(attempts)
    runs = f"after {count} attempt{'s' if count != 1 else ''}" if count else "no attempt yet"
    lines = [f"task {task.get('task_id')} ({task.get('labourer_id')}): {state}, {runs}"]
    for attempt in attempts:
        lines.append(f"attempt {attempt.number}: {attempt.outcome}")
        lines.append(f"  window {iso(attempt.start)} .. {iso(attempt.end)}")
        lines.extend(f"  {line.text()}" for line in attempt.lines)
        if attempt.note:
            lines.append(f"  ({attempt.note})")
        elif not attempt.lines:
            lines.append("  (no log lines with this task id and attempt)")
    lines.append(f"lines from {source}")
    return lines


# ------------------------------------------------------------------ jobs

#: A job of the listing: the counts it ended with ("-" while it runs: ``sosw job status`` has the live ones).
JOB_COLUMNS = (
    Column("job_id", "job", align="left", shrink=True),
    Column("labourer_id", "labourer", align="left", shrink=True),
    Column("state", align="left"),
    Column("total"),
    Column("completed", short="cmpl"),
    Column("dead"),
    Column("cancelled", short="cncl"),
    Column("created_at", "created", format=ago),
)


def job_row(job: Mapping[str, Any]) -> dict[str, Any]:
    counts = job.get("end_counts") or {}
    return {
        "job_id": job["job_id"],
        "labourer_id": job["labourer_id"],
        "state": job["state"],
        "total": int(job["total"]),
        **{k: (int(counts[k]) if k in counts else None) for k in ("completed", "dead", "cancelled")},
        "created_at": float(job["created_at"]),
        "ended_at": None if job.get("ended_at") is None else float(job["ended_at"]),
    }
