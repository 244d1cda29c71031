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
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

    status = sub.add_parser("status", help="a table per labourer: queued, running, ... dead")
    status.add_argument("--labourer")
    show = sub.add_parser("show", help="one task, wherever it is")
    show.add_argument("task_id")
    cancel = sub.add_parser("cancel", help="close a queued task as dead (Cancelled)")
    cancel.add_argument("task_id")
    prioritise = sub.add_parser("prioritise", help="move a queued task to the head of its queue")
    prioritise.add_argument("task_id")
    for name, text in (("dead", "list dead tasks"), ("redrive", "send dead tasks back to the queue")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--labourer", help="only this labourer (default: all)")
        cmd.add_argument("--error", help="only tasks whose last error has this type")
        cmd.add_argument("--since", type=float, help="only tasks closed in the last SECONDS")
        cmd.add_argument("--limit", type=int, default=100 if name == "dead" else None)

    local = sub.add_parser("local", help="start the stack on this machine and run its schedules until Ctrl-C")
    local.add_argument(
        "--speed", type=float, default=1.0, help="schedules this many times faster (60: a minute a second)"
    )
    demo = sub.add_parser("demo", help="run the demo: the local stack, a few hundred tasks, a checked summary")
    demo.add_argument("--tasks", type=int, default=300)
    demo.add_argument("--speed", type=float, default=60.0)
    demo.add_argument("--timeout", type=float, default=120.0, help="give up after this many seconds")
    return parser


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


def _config(args: argparse.Namespace) -> dict[str, Any]:
    if args.local:
        if not STATE_FILE.is_file():
            raise CliError(f"no local stack: start one with `sosw local` ({STATE_FILE} is missing)")
        state = json.loads(STATE_FILE.read_text())
        os.environ.update(state["env"])
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


def _status(tm: Any, args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    labourers = [_labourer(tm, args.labourer)] if args.labourer else tm.open_run_window()
    tm.open_run_window()
    table = Table(title="sosw status")
    columns = ("queued", "running", "expired", "failed", "waiting", "completed", "closed_completed", "dead")
    table.add_column("labourer")
    for column in (*columns, "oldest queued"):
        table.add_column(column.replace("closed_completed", "archived"), justify="right")
    for labourer in labourers:
        counts = tm.get_labourer_counts(labourer)
        age = counts["oldest_queued_age"]
        table.add_row(labourer.id, *(str(counts[c]) for c in columns), "-" if age is None else f"{age:.0f} s")
    Console().print(table)
    return 0


def _show(tm: Any, args: argparse.Namespace) -> int:
    where, task = tm.find_task(args.task_id)
    if where == "unknown":
        raise CliError(f"task {args.task_id!r} not found")
    print(json.dumps({"where": where, "task": task}, indent=2, default=str))
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
    for task in _dead_tasks(tm, args):
        error = task.get("last_error") or {}
        print(
            f"{task['task_id']}  {task['labourer_id']}  attempts={task.get('attempts')}  "
            f"closed_at={task.get('closed_at')}  {error.get('type', '')}: {error.get('message', '')}"
        )
    return 0


def _redrive(tm: Any, args: argparse.Namespace) -> int:
    tasks = _dead_tasks(tm, args)
    moved = sum(tm.redrive_task(task) for task in tasks)
    print(f"redrove {moved} of {len(tasks)} dead task(s)")
    return 0 if moved == len(tasks) else 1


def _local(args: argparse.Namespace) -> int:
    from sosw.local.demo import demo_stack

    with demo_stack() as stack:
        tick = stack.spec.schedules.get(stack.orchestrator, 60) / args.speed
        env = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(json.dumps({"config": stack.config, "env": env}, indent=2))
        print(
            f"local stack running; schedules every {tick:g} s. Use `sosw --local ...` in another shell. Ctrl-C stops."
        )
        try:
            while True:
                stack.run_orchestrator()
                stack.run_scavenger()
                time.sleep(tick)
        finally:
            STATE_FILE.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
