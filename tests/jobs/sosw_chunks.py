"""Run sosw 0.7.51's own Scheduler chunking on one job and print the task payloads as JSON lines.

Run with the interpreter of sosw's own virtualenv (``.cache/bench-sosw-venv``, made by make). Reads on stdin::

    {"job": <job event, sosw's format>, "job_schema": <schema>, "today": "YYYY-MM-DD"}

``job_schema`` is either one schema (``{"chunkable_attrs": [...]}``), which becomes sosw's
``job_schema_variants['default']``, or ``{"job_schema_variants": {name: schema, ...}}``.

Prints one payload per line, or a single ``{"error": "<ExceptionType>: message"}`` line when sosw refuses.

Why this shape: sosw's Scheduler constructor reads config from AWS and needs a Lambda context, none of
which takes part in chunking. We build the object with ``Scheduler.__new__``, give it the config
``Essential.init_config`` would have produced (DEFAULT_CONFIG with our variants), a TaskManager (also built
with ``__new__``) whose ``labourers`` config registers the job's function, and then run the very methods
``Scheduler.__call__`` runs: ``extract_job_from_payload``, ``apply_job_schema``, ``parse_job_to_file``. The
only thing patched is the ``datetime`` module that ``sosw.scheduler`` imported, so that
``datetime.date.today()`` returns the requested day. The file ``parse_job_to_file`` writes is read back and
deleted; ``process_file`` (DynamoDB/S3) is never called.
"""

import copy
import datetime
import json
import logging
import os
import sys
import types
import uuid
from unittest import mock

from sosw import scheduler as sosw_scheduler
from sosw.components.helpers import trim_arn_to_name
from sosw.managers.task import TaskManager
from sosw.scheduler import Scheduler


def frozen_datetime_module(today: datetime.date) -> types.SimpleNamespace:
    """A stand-in for the ``datetime`` module inside sosw.scheduler whose ``date.today()`` is ``today``."""

    class FrozenDate(datetime.date):
        @classmethod
        def today(cls):
            return datetime.date(today.year, today.month, today.day)

    class FrozenDateTime(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime(today.year, today.month, today.day, 12, 0, 0, tzinfo=tz)

        @classmethod
        def today(cls):
            return cls.now()

    return types.SimpleNamespace(
        date=FrozenDate, datetime=FrozenDateTime, timedelta=datetime.timedelta, timezone=datetime.timezone
    )


def _json_or_none(obj):
    """``obj`` itself, or parsed if it is JSON text; None if it is text that is not JSON."""
    if not isinstance(obj, str):
        return obj
    try:
        return json.loads(obj)
    except ValueError:
        return None


def build_scheduler(job_schema: dict, event) -> Scheduler:
    """A Scheduler with the config sosw would hold, built without AWS."""
    config = copy.deepcopy(Scheduler.DEFAULT_CONFIG)
    if isinstance(job_schema, dict) and "job_schema_variants" in job_schema:
        given = job_schema["job_schema_variants"]
        # Essential.init_config merges DEFAULT_CONFIG under the custom config, so the 'default' variant
        # (chunkable_attrs=[]) is always present unless the custom config overrides it.
        config["job_schema_variants"] = {**config["job_schema_variants"], **given}
    else:
        config["job_schema_variants"] = {"default": job_schema}
    # What __init__ validates: a neutral schema, so only the variant the job selects is checked (by
    # apply_job_schema), as it would be for the job when the Scheduler's own `job_schema` is valid.
    config["job_schema"] = {"chunkable_attrs": []}

    scheduler = Scheduler.__new__(Scheduler)
    scheduler.config = config
    scheduler.stats = {}
    scheduler.initialize_from_job_schema()  # as Scheduler.__init__ does

    # Register the job's function as a labourer, as a deployed config would (an empty name is never registered).
    labourers = {}
    raw = _json_or_none(event)
    raw_job = _json_or_none(raw.get("job", raw)) if isinstance(raw, dict) else None
    name = raw_job.get("lambda_name") if isinstance(raw_job, dict) else None
    if isinstance(name, str) and trim_arn_to_name(name):  # otherwise sosw itself refuses the job below
        labourers[trim_arn_to_name(name)] = {}
    task_manager = TaskManager.__new__(TaskManager)
    task_manager.config = {"labourers": labourers}
    scheduler.task_client = task_manager
    return scheduler


def run(request: dict) -> list:
    """sosw's payloads for the request (raises what sosw raises)."""
    today = datetime.date.fromisoformat(request["today"])
    event = copy.deepcopy(request["job"])
    scheduler = build_scheduler(copy.deepcopy(request["job_schema"]), event)

    with mock.patch.object(sosw_scheduler, "datetime", frozen_datetime_module(today)):
        # The steps of Scheduler.__call__ before process_file().
        job = scheduler.extract_job_from_payload(event)
        scheduler.apply_job_schema(name=job.get("job_schema_name"))
        if "file_name" in job:
            raise NotChunked(
                "the job has 'file_name': Scheduler.__call__ treats it as a sibling continuing a "
                "queue file and does not chunk it"
            )
        scheduler._queue_file_name = f"sosw_chunks_{os.getpid()}_{uuid.uuid4().hex}.txt"
        try:
            scheduler.parse_job_to_file(job)
            with open(scheduler.local_queue_file) as f:
                return [json.loads(line) for line in f]
        finally:
            if os.path.isfile(scheduler.local_queue_file):
                os.remove(scheduler.local_queue_file)


class NotChunked(RuntimeError):
    """Not raised by sosw: marks a job that sosw's __call__ routes away from chunking (the harness reports it)."""


def outcome(request: dict) -> dict:
    """``{"payloads": [...]}``, or ``{"error": "<Type>: message"}`` when sosw refuses the job."""
    try:
        return {"payloads": run(request)}
    # Everything sosw raises on a bad job (InvalidJob is a ValueError, OverflowError an ArithmeticError). Anything
    # else is a harness failure and crashes with its traceback.
    except (AssertionError, AttributeError, LookupError, TypeError, ValueError, ArithmeticError, RuntimeError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def main() -> None:
    """One request (payloads as JSON lines, or one error line), or ``--batch``: a JSON list of requests in,
    a JSON list of outcomes out (one interpreter for every case: sosw's import costs a second)."""
    logging.disable(logging.CRITICAL)
    if sys.argv[1:] == ["--batch"]:
        json.dump([outcome(request) for request in json.load(sys.stdin)], sys.stdout)
        return
    result = outcome(json.load(sys.stdin))
    if "error" in result:
        print(json.dumps(result))
        return
    out = sys.stdout
    for payload in result["payloads"]:
        out.write(json.dumps(payload) + "\n")


if __name__ == "__main__":
    main()
