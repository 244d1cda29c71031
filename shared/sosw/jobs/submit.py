"""Turning a job into its tasks: validated first, then created in order, resumably.

A job comes from a **source**: a list of payloads, a JSON Lines file of payloads, or a job in sosw's
Scheduler format (chunked exactly as sosw 0.7.51 chunks it, as a stream: :mod:`sosw.jobs.chunking`).
Submitting walks the source twice, holding one payload at a time:

1. **Survey**: every payload is checked (a JSON object, JSON-serialisable, fitting DynamoDB's item with
   the room kept for its result) and counted, before anything is written. Bad input writes nothing.
2. **Creation**: the header is put (``total`` known from the survey), then tasks are created in order,
   a batch at a time, with ids derived from the job and their index (``<job_id>.<index>``), by the
   conditional, idempotent creation of ``TaskCreation.ensure_tasks``: an id that exists (it may already
   be claimed, running or closed) is never overwritten. After each batch the header's ``created`` cursor
   moves on. A run that stops (its Lambda's time limit, a crash, a kill) is resumed by submitting the same
   job again with the same ``job_id``: it skips to the cursor, and the batch after it is created again
   harmlessly. A sosw job keeps the date it was first chunked with (the header's ``today``), so a resume
   the next day chunks it the same way.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Attr

from sosw.errors import InvalidInputError
from sosw.jobs.chunking import iter_task_payloads, job_labourer
from sosw.jobs.model import ACTIVE_STATES, Job, JobState, check_job_id, check_tolerance, task_id_for
from sosw.jobs.store import OPEN, JobStore
from sosw.labourer import Labourer
from sosw.tasks.context import TaskContext
from sosw.tasks.creation import TaskCreation
from sosw.validation import check_payload_dict, check_task_size, payload_to_json

__all__ = [
    "JobSource",
    "JobSubmitter",
    "JsonLinesSource",
    "PayloadSource",
    "SoswJobSource",
    "SubmitResult",
    "source_of",
]

logger = Logger(child=True)

#: Tasks created between two moves of the header's cursor (a resume redoes at most one batch).
CREATE_BATCH = 500


# ------------------------------------------------------------------------------------------------ sources


class JobSource:
    """Where a job's payloads come from. ``payloads()`` starts again from the first one on every call."""

    kind = "payloads"
    #: The labourer the source names itself (a sosw job's ``lambda_name``), or None.
    labourer_id: str | None = None
    #: What an error about the whole job names.
    field = "payloads"

    def payloads(self, today: datetime.date) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def content(self) -> str | None:
        """Canonical text of what the job is, when it is cheaper than hashing every payload (sosw jobs)."""
        return None


class PayloadSource(JobSource):
    """A list of payloads (or a callable that returns a fresh iterable of them each time)."""

    def __init__(self, payloads: Iterable[Mapping[str, Any]] | Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        if isinstance(payloads, (str, bytes, Mapping)) or not (callable(payloads) or isinstance(payloads, Iterable)):
            raise InvalidInputError("payloads", f"expected a list of payload dicts, got {type(payloads).__name__}")
        if not callable(payloads) and iter(payloads) is payloads:  # a one-shot iterator can't be read twice
            payloads = list(payloads)
        self._payloads = payloads

    def payloads(self, today: datetime.date) -> Iterator[dict[str, Any]]:
        items = self._payloads() if callable(self._payloads) else self._payloads
        for i, payload in enumerate(items):
            yield check_payload_dict(payload, f"payloads[{i}]")


def json_lines(lines: Iterable[str | bytes], where: str) -> Iterator[dict[str, Any]]:
    """One payload per non-blank line; a bad line is an error naming ``<where>:<line number>``."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            payload = json.loads(line)
        except ValueError as exc:
            raise InvalidInputError(f"{where}:{number}", f"not valid JSON ({exc})") from None
        if not isinstance(payload, dict):
            raise InvalidInputError(f"{where}:{number}", f"expected a JSON object, got {type(payload).__name__}")
        yield payload


class JsonLinesSource(JobSource):
    """A JSON Lines file, one payload object per line (blank lines skipped); errors name ``file:line``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InvalidInputError(str(self.path), "no such file")

    def payloads(self, today: datetime.date) -> Iterator[dict[str, Any]]:
        with self.path.open() as lines:
            yield from json_lines(lines, str(self.path))


class SoswJobSource(JobSource):
    """A job in sosw's Scheduler format, chunked by ``job_schema`` as sosw 0.7.51 chunks it."""

    kind = "sosw"
    field = "job"

    def __init__(self, job: Mapping[str, Any] | str, job_schema: Mapping[str, Any] | None) -> None:
        if job_schema is None:
            raise InvalidInputError(
                "job_schema", "a sosw job needs the Scheduler's job_schema / job_schema_variants (config or option)"
            )
        self.job = job
        self.job_schema = job_schema
        self.labourer_id = job_labourer(job)

    def payloads(self, today: datetime.date) -> Iterator[dict[str, Any]]:
        return iter_task_payloads(self.job, self.job_schema, today)

    def content(self) -> str:
        job = json.loads(self.job) if isinstance(self.job, str) else self.job
        return json.dumps({"job": job, "job_schema": self.job_schema}, sort_keys=True, default=str)


def source_of(payloads_or_job: Any, job_schema: Mapping[str, Any] | None) -> JobSource:
    """A source for what ``create_job`` was given: a JobSource, a sosw job (a mapping), or payloads."""
    if isinstance(payloads_or_job, JobSource):
        return payloads_or_job
    if isinstance(payloads_or_job, (Mapping, str)):
        return SoswJobSource(payloads_or_job, job_schema)
    return PayloadSource(payloads_or_job)


def config_job_schema(config: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Scheduler schema of the TaskManager config, as sosw's Scheduler config gives it."""
    if config.get("job_schema_variants"):
        return {"job_schema_variants": config["job_schema_variants"]}
    return config.get("job_schema") or None


# ------------------------------------------------------------------------------------------------ submitting


@dataclass(frozen=True)
class SubmitResult:
    job: Job
    #: False when creation stopped for time: submit the same job (same ``job_id``) again to go on.
    complete: bool
    created_now: int = 0


@dataclass(frozen=True)
class _Survey:
    total: int
    fingerprint: str


class JobSubmitter:
    """Validates a job, then creates its tasks (resuming where an earlier run stopped)."""

    def __init__(self, ctx: TaskContext, store: JobStore, creation: TaskCreation) -> None:
        self.ctx = ctx
        self.store = store
        self.creation = creation

    def labourer_for(self, source: JobSource, labourer: Labourer | str | None) -> Labourer:
        """The job's labourer: the one given, which must be the one a sosw job names, and must be configured."""
        given = labourer.id if isinstance(labourer, Labourer) else labourer
        if source.labourer_id is not None:
            if given is not None and given != source.labourer_id:
                raise InvalidInputError("lambda_name", f"the job names {source.labourer_id!r}, not {given!r}")
            try:
                return self.ctx.get_labourer(source.labourer_id)
            except InvalidInputError as exc:
                raise InvalidInputError("lambda_name", str(exc).split(": ", 1)[1]) from None
        if given is None:
            raise InvalidInputError("labourer", "payloads need a labourer")
        return self.ctx.check_labourer(labourer) if isinstance(labourer, Labourer) else self.ctx.get_labourer(given)

    def survey(
        self, source: JobSource, job_id: str, labourer_id: str, today: datetime.date, *, allow_empty: bool = False
    ) -> _Survey:
        """Every payload checked, counted and hashed; nothing written. Memory: one payload at a time."""
        digest = hashlib.sha256()
        content = source.content()
        if content is not None:
            digest.update(content.encode())
        shards = self.ctx.config["job_counter_shards"]
        total = 0
        for index, payload in enumerate(source.payloads(today)):
            where = f"{source.field}[{index}]" if source.kind == "sosw" else f"payloads[{index}]"
            text = payload_to_json(payload, where)
            if content is None:
                digest.update(text.encode() + b"\n")
            row = {
                "task_id": task_id_for(job_id, index),
                "labourer_id": labourer_id,
                "created_at": 0.0,
                "greenfield": 0,
                "attempts": 0,
                "payload": text,
                "job_id": job_id,
                "job_shard": index % shards,
            }
            check_task_size(row, self.ctx.config, where, payload_field="payload")
            total += 1
        if not total and not allow_empty:
            raise InvalidInputError(source.field, "the job makes no task: an empty job is refused")
        return _Survey(total, digest.hexdigest())

    def submit(
        self,
        source: JobSource,
        labourer: Labourer | str | None,
        *,
        job_id: str | None = None,
        tolerated_failure_percentage: float = 0,
        today: datetime.date | None = None,
        remaining: Callable[[], float] | None = None,
    ) -> SubmitResult:
        """Create the job and its tasks, or go on with an unfinished one; idempotent on ``job_id``."""
        tolerance = check_tolerance(tolerated_failure_percentage)
        job_id = check_job_id(job_id) if job_id is not None else uuid.uuid4().hex
        lab = self.labourer_for(source, labourer)
        existing = self.store.get(job_id)
        if existing is not None and existing.today:
            today = datetime.date.fromisoformat(existing.today)  # a resume chunks as the first run did
        today = today or datetime.datetime.fromtimestamp(self.ctx.clock.now(), tz=datetime.UTC).date()
        survey = self.survey(source, job_id, lab.id, today)
        fingerprint = hashlib.sha256(
            json.dumps([source.kind, lab.id, str(tolerance), survey.total, survey.fingerprint]).encode()
        ).hexdigest()
        if existing is None:
            header = {
                "job_id": job_id,
                "job_list": OPEN,
                "created_at": round(self.ctx.clock.now(), 3),
                "labourer_id": lab.id,
                "state": JobState.CREATING.value,
                "total": survey.total,
                "created": 0,
                "tolerated_failure_percentage": tolerance,
                "shards": self.ctx.config["job_counter_shards"],
                "fingerprint": fingerprint,
                "source": source.kind,
            }
            if source.kind == "sosw":
                header["today"] = today.isoformat()
            if not self.store.put_header(header):  # created meanwhile by a concurrent submit
                existing = self.store.get(job_id)
            else:
                logger.info("Job created", extra={"job_id": job_id, "labourer_id": lab.id, "total": survey.total})
        job = existing or self.store.get(job_id)
        assert job is not None
        if job.fingerprint != fingerprint:
            raise InvalidInputError(
                "job_id", f"job {job_id!r} exists with other content (labourer, payloads or tolerance); nothing written"
            )
        if job.state is not JobState.CREATING:
            return SubmitResult(job, complete=True)
        return self._create(job, source, lab, today, remaining)

    def _create(
        self,
        job: Job,
        source: JobSource,
        labourer: Labourer,
        today: datetime.date,
        remaining: Callable[[], float] | None,
    ) -> SubmitResult:
        safety = float(self.ctx.config.get("scheduler_safety_seconds", 10))
        cursor = job.created
        created_now = 0
        batch: list[tuple[int, dict[str, Any]]] = []
        payloads = enumerate(source.payloads(today))

        def flush() -> bool:
            """Create the batch, move the cursor; False when the job stopped being created meanwhile."""
            nonlocal cursor, created_now
            start, end = batch[0][0], batch[-1][0] + 1
            tasks = {task_id_for(job.job_id, i): p for i, p in batch}
            fields = {task_id_for(job.job_id, i): {"job_id": job.job_id, "job_shard": i % job.shards} for i, _ in batch}
            for result in self.creation.ensure_tasks(labourer, tasks, row_fields=fields):
                created_now += result.created
                if not result.created and result.task.get("job_id") != job.job_id:
                    raise InvalidInputError(
                        "job_id", f"task id {result.task.get('task_id')!r} is taken by a task of no or another job"
                    )
            batch.clear()
            moved = self.store.update(
                job.job_id,
                {"created": end, "creating_at": self.ctx.now()},
                condition=Attr("state").eq(JobState.CREATING.value) & Attr("created").lte(end),
            )
            cursor = end
            if moved:
                return True
            current = self.store.get(job.job_id)
            assert current is not None
            if current.state is JobState.CREATING:  # a concurrent run is ahead: go on after it
                cursor = max(cursor, current.created)
                return True
            self._stop_creating(current, end, start)
            return False

        for index, payload in payloads:
            if index < cursor:
                continue
            batch.append((index, payload))
            if len(batch) >= CREATE_BATCH:
                if not flush():
                    return SubmitResult(self._reread(job), complete=True, created_now=created_now)
                if remaining is not None and remaining() < safety:
                    logger.info("Job creation paused for time", extra={"job_id": job.job_id, "tasks_created": cursor})
                    return SubmitResult(self._reread(job), complete=False, created_now=created_now)
        if batch and not flush():
            return SubmitResult(self._reread(job), complete=True, created_now=created_now)
        self.store.update(
            job.job_id,
            {"state": JobState.RUNNING.value, "running_at": round(self.ctx.clock.now(), 3), "created": job.total},
            condition=Attr("state").eq(JobState.CREATING.value),
        )
        logger.info("Job tasks created", extra={"job_id": job.job_id, "total": job.total, "created_now": created_now})
        return SubmitResult(self._reread(job), complete=True, created_now=created_now)

    def _stop_creating(self, job: Job, end: int, start: int) -> None:
        """The job failed or was cancelled while its tasks were created: its total becomes what exists."""
        if job.state in ACTIVE_STATES and job.total > end:
            self.store.update(
                job.job_id,
                {"total": end, "created": end},
                condition=Attr("state").eq(job.state.value) & Attr("total").gt(end),
            )
        logger.info(
            "Job creation stopped", extra={"job_id": job.job_id, "state": job.state.value, "tasks_created": end}
        )

    def _reread(self, job: Job) -> Job:
        return self.store.get(job.job_id) or job
