"""``sosw``: create tasks, see the queues, operate on tasks, run the stack locally.

The same commands work against the local stack (``--local``, after ``sosw local``) and against AWS
(``--config-parameter`` naming the stack's SSM config parameter, with the usual profile and region).
Errors are one line on stderr. Exit codes: 0 done, 1 the operation could not be done (not found, not
queued, not all tasks ended as expected), 2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sosw.console.output import Output, add_output_option
from sosw.errors import SoswError

STATE_FILE = Path(".cache") / "sosw-local.json"


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sosw", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--config", type=Path, help="a JSON file holding the TaskManager config")
    source.add_argument("--config-parameter", help="the SSM parameter holding the config (a deployed stack)")
    source.add_argument("--local", action="store_true", help=f"use the stack started by `sosw local` ({STATE_FILE})")
    parser.add_argument("--endpoint-url", help="send every AWS request to this endpoint")
    parser.add_argument("--region", help="AWS region")
    parser.add_argument("--profile", help="AWS profile")
    sub = parser.add_subparsers(dest="command", required=True)

    create = sub.add_parser("create", help="create one task, or many from a JSON Lines file (bulk)")
    create.add_argument("labourer")
    group = create.add_mutually_exclusive_group(required=True)
    group.add_argument("--payload", help="the payload, a JSON object")
    group.add_argument("--file", type=Path, help="a JSON Lines file: one payload object per line")
    create.add_argument("--task-id", help="idempotent creation with this id (one task)")
    create.add_argument("--priority", action="store_true", help="at the head of the queue")
    create.add_argument("--delay", type=int, help="wait this many seconds before joining the queue")

    status = sub.add_parser("status", help="per labourer: queued, running, ... dead")
    status.add_argument("--labourer")
    status.add_argument("--watch", action="store_true", help="refresh until Ctrl-C, with completed tasks per minute")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (--watch)")
    add_output_option(status)
    show = sub.add_parser("show", help="one task, wherever it is")
    show.add_argument("task_id")
    show.add_argument("--logs", action="store_true", help="its attempts, their outcomes and their worker's log lines")
    show.add_argument(
        "--log-group", help="--logs on AWS: query this log group (default: the one the worker's function logs to)"
    )
    add_output_option(show)
    cancel = sub.add_parser("cancel", help="close a queued or waiting task as dead (Cancelled)")
    cancel.add_argument("task_id")
    prioritise = sub.add_parser("prioritise", help="move a queued task to the head of its queue")
    prioritise.add_argument("task_id")
    for name, text in (("dead", "list dead tasks"), ("redrive", "send dead tasks back to the queue")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--labourer", help="only this labourer (default: all)")
        cmd.add_argument("--error", help="only tasks whose last error has this type")
        cmd.add_argument("--since", type=float, help="only tasks closed in the last SECONDS")
        cmd.add_argument("--limit", type=int, default=100 if name == "dead" else None)
        if name == "dead":
            add_output_option(cmd)

    _job_parser(sub)
    _console_parser(sub)

    local = sub.add_parser(
        "local", help="run this folder's stack (cdk.json) on this machine, its schedules included, until Ctrl-C"
    )
    local.add_argument(
        "--speed", type=float, default=1.0, help="schedules this many times faster (60: a minute a second)"
    )
    local.add_argument("--demo", action="store_true", help="the demo's stack (labourers reliable and flaky) instead")
    local.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a context value, as `cdk -c` takes it (e.g. -c stage=test)",
    )
    local.add_argument(
        "--console-port", type=int, default=0, help="serve the console on this loopback port (default: a free one)"
    )
    local.add_argument("--no-console", action="store_true", help="don't serve the console beside the stack")
    local.add_argument(
        "--stub",
        action="append",
        default=[],
        metavar="NAME=BEHAVIOUR",
        help="stand in for an imported worker (arn): completes, fails or sleeps:SECONDS",
    )
    demo = sub.add_parser("demo", help="run the demo: the local stack, a few hundred tasks, a checked summary")
    demo.add_argument("--tasks", type=int, default=300)
    demo.add_argument("--speed", type=float, default=60.0)
    demo.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    return parser


def _job_parser(sub: Any) -> None:
    job = sub.add_parser("job", help="jobs: one business job as many tasks, followed as one thing")
    commands = job.add_subparsers(dest="job_command", required=True)
    submit = commands.add_parser(
        "submit", help="a JSON Lines file of payloads (with --labourer), or a sosw Scheduler job in JSON"
    )
    submit.add_argument("file", type=Path)
    submit.add_argument("--labourer", help="the file holds payloads, one JSON object per line, for this labourer")
    submit.add_argument("--job-schema", type=Path, help="sosw job: a JSON file with job_schema / job_schema_variants")
    submit.add_argument("--today", help="sosw job: the date its period words count from (YYYY-MM-DD; default today)")
    submit.add_argument("--job-id", help="idempotent: submitting again with this id resumes or returns the job")
    submit.add_argument("--tolerance", type=float, default=0, help="tolerated failure percentage (0-100)")
    submit.add_argument("--dry-run", action="store_true", help="print the task payloads, one per line; write nothing")
    status = commands.add_parser("status", help="progress, counts, rate and time left")
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true", help="the same as --output json")
    add_output_option(status)
    cancel = commands.add_parser("cancel", help="cancel the queued and waiting tasks (running ones finish)")
    cancel.add_argument("job_id")
    listing = commands.add_parser("list", help="jobs, newest first")
    listing.add_argument("--limit", type=int, default=20)
    add_output_option(listing)


def _console_parser(sub: Any) -> None:
    console = sub.add_parser(
        "console", help="the web console: every queue, job and dead task in a browser (prints its URL)"
    )
    console.add_argument("--host", default="127.0.0.1", help="listen on this address (default: loopback only)")
    console.add_argument("--port", type=int, default=8765)
    console.add_argument("--read-only", action="store_true", help="refuse every action (cancel, redrive, ...)")
    console.add_argument(
        "--allow-remote", action="store_true", help="allow a --host beyond loopback (plain HTTP: a warning is printed)"
    )
    console.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests addressed to this host name (the Host header)",
    )
    console.add_argument("--refresh", type=int, default=5, help="seconds between refreshes of the numbers")
    console.add_argument("--log-group", help="task logs on AWS: query this log group (default: the worker's own)")
    console.add_argument(
        "--metrics-namespace", help="the stack's CloudWatch namespace (its metrics_namespace context; default sosw)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        _apply_aws_options(args)
        return _run(args)
    except CliError as exc:
        print(f"sosw: {exc}", file=sys.stderr)
        return exc.code
    except SoswError as exc:
        print(f"sosw: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one clear line instead of a traceback
        print(f"sosw: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _apply_aws_options(args: argparse.Namespace) -> None:
    if args.endpoint_url:
        os.environ["AWS_ENDPOINT_URL"] = args.endpoint_url
    if args.region:
        os.environ["AWS_DEFAULT_REGION"] = args.region
    if args.profile:
        os.environ["AWS_PROFILE"] = args.profile


def _local_state() -> dict[str, Any]:
    """The running local stack's state file; a file left by a stack that is gone is removed, in one line.

    A stack killed without a chance to clean up (``kill -9``, a crash) leaves its file behind, which
    would otherwise send every command to endpoints nobody listens on.
    """
    if not STATE_FILE.is_file():
        raise CliError(f"no local stack: start one with `sosw local` ({STATE_FILE} is missing)")
    try:
        state = json.loads(STATE_FILE.read_text())
    except ValueError:
        state = {}
    if not _local_stack_alive(state):
        STATE_FILE.unlink(missing_ok=True)
        raise CliError(
            f"no local stack is running ({STATE_FILE} was left by one that stopped; removed): "
            "start one with `sosw local`"
        )
    return state


def _local_stack_alive(state: dict[str, Any]) -> bool:
    """Its process still exists (when the file names it) and its Lambda endpoint accepts a connection."""
    if not isinstance(state.get("config"), dict) or not isinstance(state.get("env"), dict):
        return False
    pid = state.get("pid")
    if isinstance(pid, int):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, someone else's: the endpoint check decides
            pass
    url = str(state["env"].get("AWS_ENDPOINT_URL_LAMBDA", ""))
    host, _, port = url.removeprefix("http://").partition(":")
    if not port.isdigit():
        return True  # nothing to check against
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def _config(args: argparse.Namespace) -> dict[str, Any]:
    if args.local:
        state = _local_state()
        os.environ.update(state["env"])
        args.local_state = state
        return state["config"]
    if args.config:
        try:
            return json.loads(args.config.read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"--config {args.config}: {exc}", 2) from exc
    if args.config_parameter:
        import boto3

        value = boto3.client("ssm").get_parameter(Name=args.config_parameter)["Parameter"]["Value"]
        return json.loads(value)
    raise CliError("say where the stack is: --local, --config FILE or --config-parameter NAME", 2)


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from sosw.local.demo import run_demo

        return run_demo(args.tasks, speed=args.speed, timeout=args.timeout)
    if args.command == "local":
        return _local(args)
    if args.command == "job" and args.job_command == "submit" and args.dry_run:
        return _job_preview(args)
    from sosw.managers.task import TaskManager

    tm = TaskManager(_config(args))
    return {
        "create": _create,
        "status": _status,
        "show": _show,
        "cancel": _cancel,
        "prioritise": _prioritise,
        "dead": _dead,
        "redrive": _redrive,
        "job": _job,
        "console": _console,
    }[args.command](tm, args)


def _read_payloads(path: Path) -> list[dict[str, Any]]:
    """Every line parsed before anything is written: a bad line is reported with its number."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise CliError(f"--file {path}: {exc.strerror}", 2) from exc
    payloads = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            payload = json.loads(line)
        except ValueError as exc:
            raise CliError(f"{path}:{number}: not valid JSON ({exc.msg}); nothing was created", 2) from exc
        if not isinstance(payload, dict):
            raise CliError(f"{path}:{number}: expected a JSON object; nothing was created", 2)
        payloads.append(payload)
    return payloads


def _labourer(tm: Any, labourer_id: str) -> Any:
    labourer = tm.get_labourer(labourer_id)
    if labourer is None:
        known = sorted(lab.id for lab in tm.get_labourers())
        raise CliError(f"unknown labourer {labourer_id!r}; configured labourers: {known}", 2)
    return labourer


def _create(tm: Any, args: argparse.Namespace) -> int:
    labourer = _labourer(tm, args.labourer)
    if args.file:
        if args.task_id or args.priority or args.delay is not None:
            raise CliError("--task-id, --priority and --delay create one task: use --payload", 2)
        payloads = _read_payloads(args.file)
        ids = tm.create_tasks(labourer, payloads)
        print(f"created {len(ids)} task(s) for {labourer.id}")
        return 0
    try:
        payload = json.loads(args.payload)
    except ValueError as exc:
        raise CliError(f"--payload: not valid JSON ({exc.msg})", 2) from exc
    if not isinstance(payload, dict):
        raise CliError("--payload: expected a JSON object", 2)
    if args.delay is not None:
        task = tm.create_delayed_task(labourer, payload, args.delay, task_id=args.task_id)
    elif args.priority:
        task = tm.create_priority_task(labourer, payload, task_id=args.task_id)
    elif args.task_id:
        result = tm.ensure_task(labourer, args.task_id, payload)
        task = result.task
        if not result.created:
            print(f"task {args.task_id} already exists: left as it is")
            return 0
    else:
        task = tm.create_task(labourer, payload=payload)
    print(task["task_id"])
    return 0


def _output(args: argparse.Namespace) -> Output:
    return Output(getattr(args, "output", "table"))


def _status(tm: Any, args: argparse.Namespace) -> int:
    from sosw.console.views import STATUS_COLUMNS, read_status, watch_status

    out = _output(args)
    if args.interval <= 0:
        raise CliError("--interval: expected a number of seconds > 0", 2)
    if args.watch:
        return watch_status(tm, out, labourer=args.labourer, interval=args.interval)
    rows = read_status(tm, args.labourer)
    out.rows(
        "labourers", rows, STATUS_COLUMNS, meta={"complete": all(r["complete"] for r in rows)}, empty="no labourers"
    )
    return 0


def _show(tm: Any, args: argparse.Namespace) -> int:
    from sosw.console.views import show_lines

    where, task = tm.find_task(args.task_id)
    if where == "unknown":
        raise CliError(f"task {args.task_id!r} not found")
    if args.logs:
        return _show_logs(tm, args, where, task)
    _output(args).document({"where": where, "task": task}, lambda: show_lines(where, task))
    return 0


def _show_logs(tm: Any, args: argparse.Namespace, where: str, task: dict[str, Any]) -> int:
    from sosw.console.logs import CloudWatchLogs, LocalLogs, task_logs
    from sosw.console.views import attempt_lines

    if args.local:
        log_dir = getattr(args, "local_state", {}).get("log_dir")
        if not log_dir:
            raise CliError("this local stack's state file names no log folder: restart `sosw local`")
        source: Any = LocalLogs(log_dir)
    else:
        source = CloudWatchLogs(log_group=args.log_group)
    state, attempts = task_logs(where, task, tm.config, source)
    doc = {
        "where": where,
        "task": task,
        "state": state,
        "source": source.description,
        "attempts": [a.as_dict() for a in attempts],
    }
    _output(args).document(doc, lambda: attempt_lines(task, state, attempts, source.description))
    return 0


def _cancel(tm: Any, args: argparse.Namespace) -> int:
    if not tm.cancel_task(args.task_id):
        raise CliError(f"task {args.task_id!r} is not queued: not cancelled")
    print(f"cancelled {args.task_id}")
    return 0


def _prioritise(tm: Any, args: argparse.Namespace) -> int:
    if not tm.prioritise_task(args.task_id):
        raise CliError(f"task {args.task_id!r} is not queued: not moved")
    print(f"{args.task_id} is at the head of its queue")
    return 0


def _dead_tasks(tm: Any, args: argparse.Namespace) -> list[dict[str, Any]]:
    labourers = [_labourer(tm, args.labourer)] if args.labourer else tm.get_labourers()
    since = time.time() - args.since if args.since is not None else None
    tasks: list[dict[str, Any]] = []
    for labourer in labourers:
        tasks += tm.get_dead_tasks(labourer, error_type=args.error, closed_after=since, limit=args.limit)
    return tasks


def _dead(tm: Any, args: argparse.Namespace) -> int:
    from sosw.console.views import DEAD_COLUMNS, dead_row

    rows = [dead_row(task) for task in _dead_tasks(tm, args)]
    _output(args).rows("dead_tasks", rows, DEAD_COLUMNS, empty="no dead tasks")
    return 0


def _redrive(tm: Any, args: argparse.Namespace) -> int:
    tasks = _dead_tasks(tm, args)
    moved = sum(tm.redrive_task(task) for task in tasks)
    print(f"redrove {moved} of {len(tasks)} dead task(s)")
    return 0 if moved == len(tasks) else 1


def _console(tm: Any, args: argparse.Namespace) -> int:
    """Serve the console until Ctrl-C, with the same configuration and credentials as every other command."""
    try:
        from sosw.console.web.server import ConsoleServer
    except ImportError as exc:
        raise CliError(
            f"the console needs its extra: pip install 'sosw-stack[console]' ({exc.name} is missing)", 2
        ) from exc
    from sosw.console.logs import CloudWatchLogs, LocalLogs

    if args.refresh < 1:
        raise CliError("--refresh: expected a number of seconds >= 1", 2)
    log_dir = getattr(args, "local_state", {}).get("log_dir") if args.local else None
    source: Any = LocalLogs(log_dir) if log_dir else None if args.local else CloudWatchLogs(log_group=args.log_group)
    where = (
        "local stack"
        if args.local
        else f"config {args.config}"
        if args.config
        else f"config parameter {args.config_parameter}"
    )
    server = ConsoleServer(
        tm,
        host=args.host,
        port=args.port,
        read_only=args.read_only,
        allow_remote=args.allow_remote,
        allow_hosts=args.allow_host,
        log_source=source,
        where=where,
        refresh_seconds=args.refresh,
        metrics_namespace=args.metrics_namespace,
    )
    with server:
        server.announce()
        print("Ctrl-C stops.", flush=True)
        server.wait()
    return 0


def _local_console(stack: Any, port: int) -> Any:
    """The console beside the local stack, when its extra is installed (one line says so when it is not)."""
    try:
        from sosw.console.web.server import ConsoleServer
    except ImportError:
        print("console: not served (pip install 'sosw-stack[console]' adds it)", flush=True)
        return None
    from sosw.console.logs import LocalLogs

    server = ConsoleServer(stack.task_manager(), port=port, log_source=LocalLogs(stack.log_dir), where="local stack")
    return server.start()


def _pairs(values: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key:
            raise CliError(f"{option} {value}: expected NAME=VALUE", 2)
        pairs[key] = rest
    return pairs


# ---------------------------------------------------------------------------------------------------- jobs


def _job_source(args: argparse.Namespace, config: dict[str, Any] | None) -> Any:
    """The job the file holds: payloads (``--labourer``) or a sosw job, with its schema."""
    from sosw.jobs.submit import JsonLinesSource, SoswJobSource, config_job_schema

    if args.labourer:
        if args.job_schema or args.today:
            raise CliError("--job-schema and --today are for a sosw job, not for payloads (--labourer)", 2)
        return JsonLinesSource(args.file)
    try:
        text = args.file.read_text()
    except OSError as exc:
        raise CliError(f"{args.file}: {exc.strerror}", 2) from exc
    try:
        job: Any = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{args.file}: not valid JSON ({exc}); a file of payloads needs --labourer", 2) from exc
    schema = config_job_schema(config or {})
    if args.job_schema:
        try:
            schema = json.loads(args.job_schema.read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"--job-schema {args.job_schema}: {exc}", 2) from exc
        if isinstance(schema, dict) and "job_schema" in schema and "job_schema_variants" not in schema:
            schema = schema["job_schema"]  # sosw's Scheduler config, as it is
    return SoswJobSource(job, schema)


def _today(args: argparse.Namespace) -> Any:
    import datetime

    if not args.today:
        return None
    try:
        return datetime.date.fromisoformat(args.today)
    except ValueError as exc:
        raise CliError(f"--today: expected YYYY-MM-DD, got {args.today!r}", 2) from exc


def _job_preview(args: argparse.Namespace) -> int:
    """``--dry-run``: every payload checked first (nothing printed if one is bad), then printed; no AWS call
    unless a stack is named (to check the labourer and read its job schema)."""
    import datetime

    from sosw.clock import SystemClock
    from sosw.config import build_config
    from sosw.jobs.store import JobStore
    from sosw.jobs.submit import JobSubmitter
    from sosw.tasks.context import TaskContext

    config = _config(args) if (args.local or args.config or args.config_parameter) else None
    source = _job_source(args, config)
    ctx = TaskContext(build_config(config), SystemClock())
    submitter = JobSubmitter(ctx, JobStore(ctx), None)  # type: ignore[arg-type]  # creates nothing
    labourer_id = source.labourer_id or args.labourer
    if config is not None:
        labourer_id = submitter.labourer_for(source, args.labourer).id
    today = _today(args) or datetime.datetime.now(tz=datetime.UTC).date()
    job_id = args.job_id or "0" * 32
    if submitter.survey(source, job_id, labourer_id, today, allow_empty=True).total == 0:
        print("sosw: the job makes no task (submitting it would be refused)", file=sys.stderr)
        return 0
    out = sys.stdout
    for payload in source.payloads(today):
        out.write(json.dumps(payload) + "\n")
    out.flush()
    return 0


def _job(tm: Any, args: argparse.Namespace) -> int:
    return {"submit": _job_submit, "status": _job_status, "cancel": _job_cancel, "list": _job_list}[args.job_command](
        tm, args
    )


def _job_submit(tm: Any, args: argparse.Namespace) -> int:
    source = _job_source(args, tm.config)
    job = tm.create_job(
        args.labourer,
        source,
        job_id=args.job_id,
        tolerated_failure_percentage=args.tolerance,
        today=_today(args),
    )
    print(job["job_id"])
    print(f"{job['total']} task(s) for {job['labourer_id']}, state {job['state']}", file=sys.stderr)
    return 0


def _job_status(tm: Any, args: argparse.Namespace) -> int:
    job = tm.get_job(args.job_id, breakdown=True)
    out = Output("json") if args.json else _output(args)
    out.document(job, lambda: format_job_status(job, time.time()).splitlines())
    return 0


def format_job_status(job: dict[str, Any], now: float) -> str:
    """The job in a few lines: a progress bar, the counts, the rate and the time left."""
    total, closed = job["total"], job["closed"]
    width = 30
    filled = int(width * closed / total) if total else width
    lines = [
        f"job {job['job_id']}  labourer {job['labourer_id']}  {job['state']}",
        f"[{'#' * filled}{'.' * (width - filled)}] {100 * job['progress']:5.1f}%  {closed:,} of {total:,} closed",
        f"completed {job['completed']:,}  dead {job['dead']:,}  cancelled {job['cancelled']:,}  open {job['open']:,}",
    ]
    breakdown = job.get("breakdown")
    if breakdown:
        mark = "~" if breakdown["estimated"] else ""
        note = f" (estimated from {breakdown['sampled']} tasks)" if breakdown["estimated"] else ""
        lines.append(
            f"open: queued {mark}{breakdown['queued']:,}  running {mark}{breakdown['running']:,}  "
            f"waiting {mark}{breakdown['waiting']:,}{note}"
        )
    started = job.get("running_at") or job["created_at"]
    end = job.get("ended_at") or now
    elapsed = max(end - started, 1e-9)
    rate = closed / elapsed
    if job.get("ended_at"):
        lines.append(f"rate {rate:,.1f} tasks/s  took {end - job['created_at']:,.0f} s")
    elif rate > 0:
        lines.append(f"rate {rate:,.1f} tasks/s  time left ~{job['open'] / rate:,.0f} s")
    else:
        lines.append("rate 0 tasks/s  time left unknown (nothing closed yet)")
    return "\n".join(lines)


def _job_cancel(tm: Any, args: argparse.Namespace) -> int:
    before = tm.get_job(args.job_id)
    job = tm.cancel_job(args.job_id)
    if before["state"] not in ("creating", "running", "failing", "cancelling"):
        raise CliError(f"job {args.job_id!r} has ended ({before['state']}): nothing to cancel")
    print(
        f"job {args.job_id}: {job['cancelled'] - before['cancelled']} task(s) cancelled, "
        f"{job['open']} still running; state {job['state']}"
    )
    return 0


def _job_list(tm: Any, args: argparse.Namespace) -> int:
    from sosw.console.views import JOB_COLUMNS, job_row

    rows = [job_row(job) for job in tm.list_jobs(limit=args.limit)]
    _output(args).rows("jobs", rows, JOB_COLUMNS, empty="no jobs")
    return 0


def _local_stack(args: argparse.Namespace) -> Any:
    """The stack ``sosw local`` runs: the demo's, or the one cdk.json in this folder describes."""
    from sosw.local.template import SynthError

    if args.demo:
        if args.context or args.stub:
            raise CliError("--demo runs the demo's own stack: -c and --stub are for your stack", 2)
        from sosw.local.demo import demo_stack

        return demo_stack()
    if not Path("cdk.json").is_file():
        raise CliError("no cdk.json here: run `sosw local` in your CDK project's folder (or `sosw local --demo`)", 2)
    from sosw.local.stack import project_stack

    overrides = _pairs(args.context, "-c")
    stubs = _pairs(args.stub, "--stub")
    print("synthesizing cdk.json" + "".join(f" -c {k}={v}" for k, v in overrides.items()) + " ...", flush=True)
    try:
        return project_stack(Path.cwd(), overrides=overrides, stubs=stubs)
    except SynthError as exc:
        raise CliError(f"synth failed: {exc}", 2) from exc
    except ValueError as exc:  # a --stub that names no imported worker or no known behaviour
        raise CliError(str(exc), 2) from exc


def _describe(stack: Any, tick: float) -> list[str]:
    """What runs where: each labourer's code folder, imported ones and their stubs, the logs."""
    labourers = stack.config.get("labourers", {})
    imported = stack.imported_workers()
    workers = {f.name: f for f in stack.spec.functions if f.role == "worker"}
    lines = [
        f"local stack up: {len(stack.tables())} tables, {len(stack.spec.functions)} functions; "
        f"schedules every {tick:g} s"
    ]
    for labourer, settings in labourers.items():
        if labourer in stack.stubs:
            lines.append(
                f"  {labourer}: imported ({imported[labourer]}), stood in for by a stub that {stack.stubs[labourer]}"
            )
        elif labourer in imported:
            lines.append(
                f"  {labourer}: imported ({imported[labourer]}): can't run locally; "
                f"--stub {labourer}=completes|fails|sleeps:S stands one in"
            )
        else:
            function = workers.get(str(settings.get("arn", labourer)))
            source = function.source if function and function.source else "?"
            watched = " (edits apply at the next invocation)" if function and function.name in stack.sources else ""
            lines.append(f"  {labourer}: runs {source}{watched}")
    lines.append(f"logs: {stack.log_dir}")
    lines.append("Use `sosw --local ...` in another shell. Ctrl-C stops.")
    return lines


class _Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, a process manager), taken down the same path as Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    # A second SIGTERM while the stack stops would cut its cleanup short: ignore it from now on.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Terminated


def _local(args: argparse.Namespace) -> int:
    if args.speed <= 0:
        raise CliError("--speed: expected a number > 0", 2)
    # Installed before anything starts, so a SIGTERM during start-up stops what already runs too.
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with _local_stack(args) as stack:
            tick = stack.spec.schedules.get(stack.orchestrator, 60) / args.speed
            env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
            STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
            state = {"pid": os.getpid(), "config": stack.config, "env": env, "log_dir": str(stack.log_dir)}
            STATE_FILE.write_text(json.dumps(state, indent=2))
            console = None if args.no_console else _local_console(stack, args.console_port)
            lines = _describe(stack, tick)
            if console is not None:
                lines.insert(-1, f"console: {console.url}")
            print("\n".join(lines), flush=True)
            try:
                while True:
                    stack.schedule_tick()
                    time.sleep(tick)
            finally:
                STATE_FILE.unlink(missing_ok=True)
                if console is not None:
                    console.stop()
    except _Terminated:
        print("local stack stopped (SIGTERM)", flush=True)
        return 128 + signal.SIGTERM
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
