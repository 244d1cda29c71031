"""The console's pages and actions: a Starlette app over one TaskManager.

Every page is a URL whose filters live in the query string (times in ISO 8601 UTC); every action is a
POST that calls the TaskManager method the CLI calls (:mod:`sosw.console.web.actions`), then redirects
back with a notice. boto3 is synchronous: each request's reads run in Starlette's thread pool.

    app = create_app(TaskManager(config), Guard(token=secrets.token_urlsafe(32)))
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from sosw.console.logs import LogSource, task_logs
from sosw.console.views import iso
from sosw.console.web.actions import Actions, RedriveFilter
from sosw.console.web.metrics import CompletionMetrics
from sosw.console.web.reads import STATES, TaskFilter, dead_groups, list_tasks, overview
from sosw.console.web.security import Guard, SecurityMiddleware
from sosw.errors import SoswError
from sosw.managers.task import TaskManager

__all__ = ["ConsoleOptions", "create_app"]

HERE = Path(__file__).resolve().parent
#: The dry run of "redrive everything matching" reads at most this many dead tasks to count them.
DRY_RUN_READ = 2_000
#: Refresh intervals the pages offer, in seconds.
REFRESH_CHOICES = (2, 5, 10, 30, 60)
NOTICES = {
    "cancelled": "Task cancelled.",
    "not-cancelled": "Not cancelled: the task is not queued or waiting any more.",
    "prioritised": "Task moved to the head of its queue.",
    "not-prioritised": "Not moved: the task is not queued any more.",
    "redriven": "Sent back to its queue.",
    "not-redriven": "Not redriven: the task is not dead any more.",
    "job-cancelled": "Job cancelled: its queued and waiting tasks are closed; running ones finish.",
}


@dataclass(frozen=True)
class ConsoleOptions:
    """How the console was started: its safety settings, where task logs come from, the default refresh."""

    guard: Guard
    log_source: LogSource | None = None
    refresh_seconds: int = 5
    where: str = ""  # "the local stack", "config parameter /x", ...


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]), trim_blocks=True
    )
    env.filters["iso"] = lambda value: iso(value) or "-"
    env.filters["age"] = _age
    env.filters["number"] = lambda value: "-" if value is None else f"{value:,}"
    env.globals["query"] = _query
    return env


def _age(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _query(params: dict[str, Any], **changes: Any) -> str:
    """The query string of ``params`` with ``changes`` (None removes a key), empty values left out."""
    merged = {**params, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "")})


def _time(request: Request, name: str) -> float | None:
    """A time filter of the URL: ISO 8601, in UTC unless it says otherwise."""
    text = request.query_params.get(name, "").strip()
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise HTTPException(
            400, f"{name}: expected an ISO 8601 time in UTC (2026-12-08T01:00:00Z), got {text!r}"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def create_app(
    tm: TaskManager,
    options: ConsoleOptions,
    *,
    actions: Actions | None = None,
    metrics: CompletionMetrics | None = None,
    clock: Callable[[], float] = time.time,
) -> Starlette:
    """The console over ``tm``: its pages, its actions, its static files, behind ``options.guard``."""
    env = _templates()
    actions = actions or Actions(tm)
    metrics = metrics or CompletionMetrics()
    guard = options.guard

    def render(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        refresh = request.query_params.get("refresh", "")
        body = env.get_template(name).render(
            request=request,
            read_only=guard.read_only,
            console_where=options.where,
            refresh_seconds=options.refresh_seconds,
            refresh_choices=REFRESH_CHOICES,
            notice=NOTICES.get(request.query_params.get("notice", "")),
            now=clock(),
            params=dict(request.query_params),
            refresh=refresh,
            **context,
        )
        return HTMLResponse(body, status_code=status)

    def partial(request: Request) -> bool:
        return request.headers.get("hx-request") == "true"

    async def home(request: Request) -> Response:
        now = clock()
        rows = await run_in_threadpool(overview, tm, now)
        rates = await run_in_threadpool(metrics.completions, [r.labourer_id for r in rows], now)
        template = "_overview.html" if partial(request) else "overview.html"
        return render(request, template, rows=rows, rates=rates)

    async def tasks(request: Request) -> Response:
        q = request.query_params
        try:
            flt = TaskFilter(
                state=q.get("state", "queued"),
                labourer=q.get("labourer", ""),
                job=q.get("job", ""),
                error=q.get("error", ""),
                since=_time(request, "since"),
                until=_time(request, "until"),
                payload_key=q.get("payload_key", ""),
                payload_value=q.get("payload_value", ""),
            )
        except SoswError as exc:
            raise HTTPException(400, str(exc)) from exc
        page = await run_in_threadpool(list_tasks, tm, flt, q.get("cursor"))
        labourers = [lab.id for lab in tm.get_labourers()]
        return render(request, "tasks.html", page=page, flt=flt, states=STATES, labourers=labourers)

    async def task(request: Request) -> Response:
        task_id = request.path_params["task_id"]

        def read() -> tuple[str, dict[str, Any], str, list[Any]]:
            where, found = tm.find_task(task_id)
            if where == "unknown":
                raise HTTPException(404, f"task {task_id!r} not found (open, waiting or closed)")
            if options.log_source is None:
                from sosw.console.logs import attempts_of, last_outcome, settle_outcomes

                state, attempts = attempts_of(where, found, tm.config, clock())
                settle_outcomes(state, attempts, last_outcome(where, found))
            else:
                state, attempts = task_logs(where, found, tm.config, options.log_source, clock())
            return where, found, state, attempts

        where, found, state, attempts = await run_in_threadpool(read)
        return render(
            request,
            "task.html",
            where=where,
            task=found,
            state=state,
            attempts=attempts,
            timeline=_timeline(found, tm.config),
            log_source=options.log_source.description if options.log_source else None,
            can_cancel=where == "waiting" or (where == "open" and state == "queued"),
            can_prioritise=where == "open" and state == "queued",
            can_redrive=where == "closed" and str(found.get("labourer_id_task_status", "")).endswith("_0"),
        )

    async def task_action(request: Request) -> Response:
        task_id, action = request.path_params["task_id"], request.path_params["action"]
        if action == "cancel":
            done = await run_in_threadpool(actions.cancel, task_id)
            notice = "cancelled" if done else "not-cancelled"
        elif action == "prioritise":
            done = await run_in_threadpool(actions.prioritise, task_id)
            notice = "prioritised" if done else "not-prioritised"
        elif action == "redrive":
            moved, _refused = await run_in_threadpool(actions.redrive, [task_id])
            notice = "redriven" if moved else "not-redriven"
        else:
            raise HTTPException(404, f"no action {action!r}: cancel, prioritise or redrive")
        return RedirectResponse(f"/tasks/{task_id}?notice={notice}", status_code=303)

    async def jobs(request: Request) -> Response:
        listed = await run_in_threadpool(lambda: tm.list_jobs(limit=50))
        return render(request, "jobs.html", jobs=listed)

    async def job(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            found = await run_in_threadpool(lambda: tm.get_job(job_id, breakdown=True))
        except SoswError as exc:
            raise HTTPException(404, str(exc)) from exc
        template = "_job.html" if partial(request) else "job.html"
        return render(request, template, job=found, budget=_budget(found))

    async def job_cancel(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            await run_in_threadpool(actions.cancel_job, job_id)
        except SoswError as exc:
            raise HTTPException(409, str(exc)) from exc
        return RedirectResponse(f"/jobs/{job_id}?notice=job-cancelled", status_code=303)

    def dead_filter(source: Any) -> RedriveFilter:
        return RedriveFilter(
            labourer=str(source.get("labourer", "")),
            error=str(source.get("error", "")),
            since=_float(source.get("since_epoch")),
            until=_float(source.get("until_epoch")),
        )

    async def dead(request: Request) -> Response:
        q = request.query_params
        since, until = _time(request, "since"), _time(request, "until")
        try:
            groups, read, more = await run_in_threadpool(
                dead_groups, tm, q.get("labourer", ""), q.get("error", ""), since, until
            )
        except SoswError as exc:
            raise HTTPException(400, str(exc)) from exc
        labourers = [lab.id for lab in tm.get_labourers()]
        return render(
            request, "dead.html", groups=groups, read=read, more=more, labourers=labourers, since=since, until=until
        )

    async def dead_redrive(request: Request) -> Response:
        form = await request.form()
        ids = [str(i) for i in form.getlist("task_id")]
        if not ids:
            raise HTTPException(400, "task_id: select at least one dead task")
        if len(ids) > 500:
            raise HTTPException(400, "task_id: at most 500 tasks at once (use redrive everything matching)")
        moved, refused = await run_in_threadpool(actions.redrive, ids)
        return render(request, "redriven.html", moved=moved, refused=refused, asked=len(ids))

    async def dead_dry_run(request: Request) -> Response:
        form = await request.form()
        flt = dead_filter(form)
        if not flt.labourer:
            raise HTTPException(400, "labourer: a redrive of everything matching takes one labourer")
        dry = await run_in_threadpool(actions.dry_run, flt, DRY_RUN_READ, clock())
        return render(request, "dry_run.html", dry=dry, flt=flt)

    async def dead_redrive_all(request: Request) -> Response:
        form = await request.form()
        if str(form.get("confirm", "")) != "yes":
            raise HTTPException(400, "confirm: tick the confirmation to redrive every task the dry run counted")
        run = await run_in_threadpool(actions.start_redrive, str(form.get("confirmation", "")))
        return RedirectResponse(f"/redrives/{run.run_id}", status_code=303)

    async def redrive_progress(request: Request) -> Response:
        run = actions.run(request.path_params["run_id"])
        if run is None:
            raise HTTPException(404, "no such redrive in this console's run")
        template = "_redrive.html" if partial(request) else "redrive.html"
        return render(request, template, run=run)

    async def error_page(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            status, detail = exc.status_code, exc.detail
        elif isinstance(exc, SoswError):  # bad input is the caller's (400), a refused operation a conflict (409)
            status, detail = (400 if isinstance(exc, ValueError) else 409), str(exc)
        else:
            status, detail = 500, f"{type(exc).__name__}: {exc}"
        return render(request, "error.html", status=status, status_code=status, detail=detail)

    routes = [
        Route("/", home),
        Route("/tasks", tasks),
        Route("/tasks/{task_id}", task),
        Route("/tasks/{task_id}/{action}", task_action, methods=["POST"]),
        Route("/jobs", jobs),
        Route("/jobs/{job_id}", job),
        Route("/jobs/{job_id}/cancel", job_cancel, methods=["POST"]),
        Route("/dead", dead),
        Route("/dead/redrive", dead_redrive, methods=["POST"]),
        Route("/dead/dry-run", dead_dry_run, methods=["POST"]),
        Route("/dead/redrive-all", dead_redrive_all, methods=["POST"]),
        Route("/redrives/{run_id}", redrive_progress),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(TrustedHostMiddleware, allowed_hosts=list(guard.allowed_hosts)),
        Middleware(SecurityMiddleware, guard=guard),
    ]
    handlers = {HTTPException: error_page, SoswError: error_page, Exception: error_page}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)


def _float(value: Any) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(str(value))
    except ValueError:
        raise HTTPException(400, f"expected a number, got {value!r}") from None


def _timeline(task: dict[str, Any], config: dict[str, Any]) -> list[tuple[str, float]]:
    """The task's recorded moments, in order: created, invoked, started, failed or completed, retry due, closed."""
    events: list[tuple[str, float]] = []
    delta = float(config.get("greenfield_invocation_delta", 31_557_600))
    greenfield, created = task.get("greenfield"), task.get("created_at")
    for label, key in (("created", "created_at"),):
        if isinstance(task.get(key), int | float):
            events.append((label, float(task[key])))
    if task.get("attempts") and isinstance(greenfield, int | float) and isinstance(created, int | float):
        invoked = float(greenfield) - delta
        if invoked >= created - 1:
            events.append((f"invoked (attempt {task['attempts']})", invoked))
    for label, key in (
        ("started", "started_at"),
        ("failed", "failed_at"),
        ("completed", "completed_at"),
        ("retry due", "desired_launch_time"),
        ("closed", "closed_at"),
    ):
        if isinstance(task.get(key), int | float):
            events.append((label, float(task[key])))
    return sorted(events, key=lambda e: e[1])


def _budget(job: dict[str, Any]) -> dict[str, Any]:
    """The job's failure budget: dead tasks it may still take before it fails (more than the tolerance fails)."""
    allowed = job["total"] * float(job["tolerated_failure_percentage"]) / 100
    return {"allowed": allowed, "used": job["dead"], "left": max(0.0, allowed - job["dead"])}
