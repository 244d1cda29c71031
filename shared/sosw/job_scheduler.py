"""The Scheduler: takes a job and makes its tasks, as sosw's Scheduler does, resumably.

It is invoked asynchronously with sosw's job event (the job, or ``{"job": <job>}``; the wrapper may add
``job_id`` and ``tolerated_failure_percentage``), or by EventBridge when a job file is uploaded to the
stack's jobs bucket (S3 "Object Created"): a ``.json`` file holds a sosw job, a ``.jsonl`` file under
``<labourer>/`` holds payloads, one per line.

The job id is derived from what was delivered when the event gives none (the job and its date; the
object's key and upload), so a delivery Lambda or EventBridge repeats is the same job, not a second one.
A run that nears its time limit stops after a batch (the job's cursor is saved) and invokes itself with
the rest to do; a run killed by its timeout is retried by Lambda with the same event, and resumes.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from aws_lambda_powertools import Logger

from sosw.errors import InvalidInputError
from sosw.jobs.submit import JobSource, json_lines
from sosw.managers.task import TaskManager

__all__ = ["JobScheduler", "S3JsonLinesSource"]

logger = Logger(child=True)

#: Largest job sent back in a continuation event (Lambda's asynchronous payload limit is 256 KB).
MAX_CONTINUATION_JOB_BYTES = 200_000


class S3JsonLinesSource(JobSource):
    """Payloads from a JSON Lines object, streamed line by line (each pass reads the object again)."""

    def __init__(self, s3: Any, bucket: str, key: str) -> None:
        self.s3, self.bucket, self.key = s3, bucket, key

    def payloads(self, today: datetime.date) -> Iterator[dict[str, Any]]:
        body = self.s3.get_object(Bucket=self.bucket, Key=self.key)["Body"]
        yield from json_lines(body.iter_lines(), f"s3://{self.bucket}/{self.key}")


class JobScheduler:
    """``JobScheduler(task_manager).handle(event, remaining_seconds)``: one Scheduler invocation."""

    def __init__(
        self,
        task_manager: TaskManager,
        *,
        s3_client: Any = None,
        lambda_client: Any = None,
        function_name: str | None = None,
    ) -> None:
        self.tm = task_manager
        self._s3 = s3_client
        self._lambda = lambda_client
        self.function_name = function_name or os.environ.get("AWS_LAMBDA_FUNCTION_NAME")

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            import boto3

            self._s3 = boto3.client("s3")
        return self._s3

    @property
    def lambda_client(self) -> Any:
        return self._lambda or self.tm.lambda_client

    def handle(self, event: Any, remaining: Callable[[], float] | None = None) -> dict[str, Any]:
        """Create (or go on creating) the event's job; returns its id, total, state and whether it is complete."""
        if isinstance(event, Mapping) and event.get("source") == "aws.s3":
            detail = event.get("detail") or {}
            bucket, key = detail["bucket"]["name"], detail["object"]["key"]
            upload = detail["object"].get("sequencer") or detail["object"].get("etag", "")
            request: dict[str, Any] = {
                "s3": {"bucket": bucket, "key": key},
                "job_id": _derived("s3", bucket, key, upload),
            }
        elif isinstance(event, Mapping) and "s3" in event:  # our own continuation of an uploaded file
            request = dict(event)
        else:
            request = self._job_request(event)
        labourer, source, options = self._source(request)
        tolerance = options.get("tolerated_failure_percentage", request.get("tolerated_failure_percentage", 0))
        result = self.tm.create_job(
            labourer,
            source,
            job_id=request["job_id"],
            tolerated_failure_percentage=tolerance,
            remaining=remaining,
        )
        if not result["complete"]:
            self._continue(request)
        logger.info(
            "Job scheduled",
            extra={k: result[k] for k in ("job_id", "labourer_id", "total", "state", "complete", "created_now")},
        )
        return {k: result[k] for k in ("job_id", "labourer_id", "total", "state", "complete")}

    def _job_request(self, event: Any) -> dict[str, Any]:
        """sosw's job event, with our options when it is the wrapped form; the job id derived if not given."""
        outer = json.loads(event) if isinstance(event, (str, bytes)) else event
        if not isinstance(outer, Mapping):
            raise InvalidInputError("job", f"the event must be a JSON object, got {type(outer).__name__}")
        request = dict(outer) if "job" in outer else {"job": dict(outer)}
        if not request.get("job_id"):
            today = datetime.datetime.fromtimestamp(self.tm.clock.now(), tz=datetime.UTC).date()
            content = json.dumps(request["job"], sort_keys=True, default=str)
            request["job_id"] = _derived("sosw", content, today.isoformat(), str(request.get("job_schema_name")))
        return request

    def _source(self, request: Mapping[str, Any]) -> tuple[str | None, Any, Mapping[str, Any]]:
        """The labourer (for payloads), the job's source, and the options an uploaded job file gives itself."""
        if "s3" in request:
            bucket, key = request["s3"]["bucket"], request["s3"]["key"]
            if key.endswith(".jsonl"):
                labourer = key.split("/", 1)[0] if "/" in key else None
                if not labourer:
                    raise InvalidInputError("key", f"a file of payloads goes under its labourer: <labourer>/{key}")
                return labourer, S3JsonLinesSource(self.s3, bucket, key), {}
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            try:
                job = json.loads(body)
            except ValueError as exc:
                raise InvalidInputError("job", f"s3://{bucket}/{key} is not JSON ({exc})") from None
            if isinstance(job, Mapping) and "job" in job:  # the wrapped form, with its options
                options = {k: job[k] for k in ("tolerated_failure_percentage",) if k in job}
                return None, self.tm.jobs.source(job["job"]), options
            return None, self.tm.jobs.source(job), {}
        return None, self.tm.jobs.source(request["job"]), {}

    def _continue(self, request: Mapping[str, Any]) -> None:
        """Invoke this function again, asynchronously, to go on from the job's cursor."""
        if not self.function_name:
            logger.warning("Job creation paused, and no function to continue it", extra={"job_id": request["job_id"]})
            return
        event = {k: v for k, v in request.items() if k in ("job", "s3", "job_id", "tolerated_failure_percentage")}
        payload = json.dumps(event, default=str)
        if len(payload) > MAX_CONTINUATION_JOB_BYTES:
            logger.warning(
                "Job too large to send on: Lambda's retry of the event resumes it", extra={"job_id": request["job_id"]}
            )
            return
        self.lambda_client.invoke(FunctionName=self.function_name, InvocationType="Event", Payload=payload)
        logger.info("Job creation continues in a new invocation", extra={"job_id": request["job_id"]})


def _derived(kind: str, *parts: str) -> str:
    """A job id from what identifies a delivery: its repeats get the same id (and so the same job)."""
    return f"{kind}-" + hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]
