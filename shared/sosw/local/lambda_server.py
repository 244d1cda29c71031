"""A local Lambda endpoint: the real handlers from ``lambdas/`` behind Lambda's HTTP API, on loopback.

boto3 reaches it through ``AWS_ENDPOINT_URL_LAMBDA``, so production code doesn't know it is local. It
implements Invoke (``Event``: queued, at most ``concurrency`` at once per function; and
``RequestResponse``) and GetFunctionConfiguration. Each function runs in a pool of warm worker
processes; an invocation that passes the function's timeout has its process killed and replaced,
like Lambda's. A failed asynchronous invocation (exception, crash, timeout, event too old) goes to
the function's on-failure destination with Lambda's record format; Lambda-level retries are off, as
the stack configures them.
"""

from __future__ import annotations

import importlib
import json
import multiprocessing
import os
import queue
import re
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

_INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations")
_CONFIG = re.compile(r"^/2015-03-31/functions/([^/]+)/configuration")
ACCOUNT = "000000000000"
INIT_TIMEOUT = 60.0
REGION = "us-east-1"


@dataclass(frozen=True)
class FunctionSpec:
    """One function: its code folder and handler, timeout, environment and on-failure destination."""

    name: str
    code_dir: str
    handler: str = "app.handler"
    timeout: float = 30.0
    environment: Mapping[str, str] = field(default_factory=dict)
    on_failure: str | None = None
    concurrency: int = 2
    max_event_age: float | None = None
    retry_attempts: int = 0  # Lambda's MaximumRetryAttempts for asynchronous invocations
    retry_delay: float = 1.0  # Lambda waits about a minute, then two; locally a second
    #: The folder ``code_dir`` is staged from: when its files change, the next invocation re-stages it and
    #: runs in fresh processes (an edit takes effect without a restart). None: the code never changes.
    source_dir: str | None = None

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.name}"


class _Context:
    """What a handler's ``context`` offers (what Powertools reads from it)."""

    def __init__(self, spec: FunctionSpec, deadline: float) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = 128
        self.aws_request_id = uuid.uuid4().hex
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = "local"
        self._deadline = deadline

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.time()) * 1000))


def _serve(conn: Any, spec: FunctionSpec, log_path: str | None) -> None:
    """A worker process: import the handler once (warm), then run invocations sent over ``conn``."""
    if log_path:
        stream = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
        sys.stdout = sys.stderr = stream
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
    os.environ.update(spec.environment)
    os.environ.update(
        AWS_LAMBDA_FUNCTION_NAME=spec.name,
        AWS_LAMBDA_FUNCTION_TIMEOUT=str(int(spec.timeout)),
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE="128",
    )
    sys.path.insert(0, spec.code_dir)
    module_name, _, function_name = spec.handler.rpartition(".")
    handler = getattr(importlib.import_module(module_name), function_name)
    conn.send(("ready", None))  # the init phase is over: Lambda times it apart from invocations
    while True:
        try:
            event = conn.recv()
        except EOFError:
            return
        try:
            result = handler(event, _Context(spec, time.time() + spec.timeout))
            conn.send(("ok", json.loads(json.dumps(result, default=str))))
        except Exception as exc:
            traceback.print_exc()
            conn.send(("error", {"errorType": type(exc).__name__, "errorMessage": str(exc)}))


# Libraries only: sosw's modules read the function's environment (Powertools service name) at import.
_PRELOAD = ["boto3", "botocore.session", "aws_lambda_powertools", "aws_lambda_powertools.utilities.parameters"]


def _process_context() -> multiprocessing.context.BaseContext:
    """Worker processes come from a fork server that imported boto3 and Powertools once.

    Spawning each from scratch costs a second or more of imports per process, which, with dozens of
    them on two cores, would eat into the first invocations' timeouts. The fork server is a clean,
    single-threaded process, so forking it is safe where forking this threaded one is not.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def code_fingerprint(folder: str | os.PathLike[str]) -> tuple[tuple[str, int, int], ...]:
    """Every file of a code folder with its modification time and size: a change in any is a new version."""
    root = Path(folder)
    files = []
    for path in root.rglob("*"):
        if "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo") or not path.is_file():
            continue
        stat = path.stat()
        files.append((path.relative_to(root).as_posix(), stat.st_mtime_ns, stat.st_size))
    return tuple(sorted(files))


def stage_code(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
    """Copy a code folder to where its function runs it, replacing what was there (as a new deployment does)."""
    import shutil

    staging = Path(f"{target}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(source, staging, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo"))
    shutil.rmtree(target, ignore_errors=True)
    os.replace(staging, target)


class _Slot:
    """One warm process of a function; replaced when it times out or dies, or when its code changed."""

    def __init__(self, spec: FunctionSpec, log_path: str | None) -> None:
        self.spec = spec
        self.log_path = log_path
        self.version = 0  # the function's code version this process imported
        self._start()

    def _start(self) -> None:
        ctx = _process_context()
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, self.spec, self.log_path), daemon=True)
        self.process.start()
        child.close()
        self.ready = False

    def _wait_ready(self) -> None:
        """Wait for the init phase (imports): like Lambda, it doesn't count against the function's timeout."""
        if not self.ready and self.conn.poll(INIT_TIMEOUT):
            self.conn.recv()
            self.ready = True

    def restart(self) -> None:
        self.stop()
        self._start()

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    def call(self, event: Any) -> tuple[bool, Any]:
        try:
            self._wait_ready()
        except (EOFError, ConnectionError):
            self.restart()
            return False, {"errorType": "Runtime.ExitError", "errorMessage": "the process died during init"}
        self.conn.send(event)
        if not self.conn.poll(self.spec.timeout):
            self.restart()
            return False, {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"Task timed out after {self.spec.timeout:.2f} seconds",
            }
        try:
            status, body = self.conn.recv()
        except (EOFError, ConnectionError):
            self.process.join(timeout=2)
            code = self.process.exitcode
            self.restart()
            return False, {"errorType": "Runtime.ExitError", "errorMessage": f"process exited with {code}"}
        return status == "ok", body


class _Function:
    def __init__(self, server: LocalLambda, spec: FunctionSpec) -> None:
        self.server = server
        self.spec = spec
        log_path = str(server.log_dir / f"{spec.name}.log") if server.log_dir else None
        self.idle: queue.Queue[_Slot] = queue.Queue()
        self.slots = [_Slot(spec, log_path) for _ in range(spec.concurrency)]
        for slot in self.slots:
            self.idle.put(slot)
        self.events: queue.Queue[tuple[float, Any, int] | None] = queue.Queue()
        self.in_flight = 0
        self.busy = 0
        self._lock = threading.Lock()
        self.version = 0  # bumped each time the code is re-staged
        self._code_lock = threading.Lock()
        self._fingerprint = code_fingerprint(spec.source_dir) if spec.source_dir else None
        self.threads = [
            threading.Thread(target=self._dispatch, name=f"{spec.name}-{i}", daemon=True)
            for i in range(spec.concurrency)
        ]
        for thread in self.threads:
            thread.start()

    def submit(
        self, event: Any, retries_left: int | None = None, enqueued: float | None = None, counted: bool = False
    ) -> None:
        if not counted:
            with self._lock:
                self.in_flight += 1
        if retries_left is None:
            self.server.record(self.spec.name, event)
        left = self.spec.retry_attempts if retries_left is None else retries_left
        self.events.put((enqueued or time.time(), event, left))

    def _refresh_code(self) -> None:
        """Re-stage the code if its source folder changed since the last invocation (cheap: a stat per file)."""
        if not self.spec.source_dir:
            return
        with self._code_lock:
            fingerprint = code_fingerprint(self.spec.source_dir)
            if fingerprint == self._fingerprint:
                return
            stage_code(self.spec.source_dir, self.spec.code_dir)
            self._fingerprint = fingerprint
            self.version += 1
            self.server.count(self.spec.name, "code_reloaded")

    def invoke_sync(self, event: Any) -> tuple[bool, Any]:
        self._refresh_code()
        slot = self.idle.get()
        if slot.version != self.version:
            # A warm process of the old code: recycled; the new one's import is its init, as after a deployment.
            slot.restart()
            slot.version = self.version
        with self._lock:
            self.busy += 1
            self.server.peak(self.spec.name, self.busy)
        started = time.monotonic()
        try:
            ok, body = slot.call(event)
        finally:
            self.server.ran(self.spec.name, time.monotonic() - started)
            with self._lock:
                self.busy -= 1
            self.idle.put(slot)
        self.server.count(self.spec.name, "ok" if ok else body.get("errorType", "error"))
        return ok, body

    def _dispatch(self) -> None:
        while True:
            item = self.events.get()
            if item is None:
                return
            enqueued, event, retries_left = item
            try:
                age = time.time() - enqueued
                if self.spec.max_event_age is not None and age > self.spec.max_event_age:
                    self.server.count(self.spec.name, "EventAgeExceeded")
                    self._on_failure(event, "EventAgeExceeded", None)
                    continue
                ok, body = self.invoke_sync(event)
                if not ok and retries_left > 0:
                    # Lambda retries a failed asynchronous invocation itself, later, with the same event.
                    with self._lock:
                        self.in_flight += 1  # still in flight while it waits for its retry
                    retry = (event, retries_left - 1, enqueued, True)
                    timer = threading.Timer(self.spec.retry_delay, self.submit, retry)
                    timer.daemon = True
                    timer.start()
                elif not ok:
                    self._on_failure(event, "RetriesExhausted", body)
            finally:
                with self._lock:
                    self.in_flight -= 1

    def _on_failure(self, event: Any, condition: str, error: Any) -> None:
        if not self.spec.on_failure:
            return
        record = {
            "version": "1.0",
            "timestamp": datetime.now(tz=UTC).isoformat(),
            "requestContext": {
                "requestId": uuid.uuid4().hex,
                "functionArn": f"{self.spec.arn}:$LATEST",
                "condition": condition,
                "approximateInvokeCount": 1,
            },
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": error,
        }
        self.server.invoke_async(self.spec.on_failure, record)

    def stop(self) -> None:
        for _ in self.threads:
            self.events.put(None)
        for thread in self.threads:
            thread.join(timeout=self.spec.timeout + 5)
        for slot in self.slots:
            slot.stop()


class _Server(ThreadingHTTPServer):
    # The Orchestrator invokes from 16 threads at once: with the default listen backlog of 5, some of their
    # connections wait for seconds, and an Invoke that times out is left "outcome unknown" (the task waits for
    # its expiry). Lambda's endpoint takes them all.
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A caller that stopped waiting (its read timeout passed) is not the endpoint's error.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LocalLambda:
    """``with LocalLambda([FunctionSpec(...), ...]) as lam: os.environ["AWS_ENDPOINT_URL_LAMBDA"] = lam.url``."""

    def __init__(
        self,
        functions: list[FunctionSpec],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.specs = {spec.name: spec for spec in functions}
        self.log_dir = Path(log_dir) if log_dir else None
        self.counts: dict[str, Counter[str]] = {name: Counter() for name in self.specs}
        #: Every asynchronous event accepted, by function: what tests check "invoked exactly once" against.
        self.deliveries: dict[str, list[Any]] = {name: [] for name in self.specs}
        #: When each of those events was accepted (``time.time()``), in the same order.
        self.delivery_times: dict[str, list[float]] = {name: [] for name in self.specs}
        #: Seconds each function's invocations ran, asynchronous and synchronous alike (what Lambda bills;
        #: the init of a process replaced after a timeout or a crash counts here too), and how many ran.
        self.run_seconds: Counter[str] = Counter()
        self.runs: Counter[str] = Counter()
        #: When each invocation of a function ended (``time.time()``), synchronous and asynchronous alike, in the
        #: order they ended: a worker that reports its failure and returns has freed its slot by then.
        self.finish_times: dict[str, list[float]] = {name: [] for name in self.specs}
        #: The most invocations of each function that ran at the same time.
        self.peaks: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self._functions: dict[str, _Function] = {}
        self._server = _Server((host, port), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="local-lambda", daemon=True)

    def start(self) -> LocalLambda:
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        for name, spec in self.specs.items():
            self._functions[name] = _Function(self, spec)
        for function in self._functions.values():  # every process past its init before the first event
            for slot in function.slots:
                slot._wait_ready()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        for function in self._functions.values():
            function.stop()

    def __enter__(self) -> LocalLambda:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, name: str, outcome: str) -> None:
        with self._counts_lock:
            self.counts[name][outcome] += 1

    def peak(self, name: str, busy: int) -> None:
        with self._counts_lock:
            self.peaks[name] = max(self.peaks[name], busy)

    def record(self, name: str, event: Any) -> None:
        with self._counts_lock:
            self.deliveries[name].append(event)
            self.delivery_times[name].append(time.time())

    def ran(self, name: str, seconds: float) -> None:
        with self._counts_lock:
            self.run_seconds[name] += seconds
            self.runs[name] += 1
            self.finish_times[name].append(time.time())

    def function(self, name_or_arn: str) -> _Function | None:
        """The function a name or ARN (full or partial, maybe qualified; as boto3 sends it, URL-decoded) names."""
        name = name_or_arn.rsplit("function:", 1)[-1].split(":")[0]
        return self._functions.get(name)

    def invoke_async(self, name: str, event: Any) -> bool:
        function = self.function(name)
        if function is None:
            return False
        function.submit(event)
        return True

    def in_flight(self) -> int:
        return sum(f.in_flight for f in self._functions.values())

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Wait until no asynchronous invocation is queued or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.in_flight() == 0:
                return True
            time.sleep(0.02)
        return False

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def _not_found(self, name: str) -> None:
                self._reply(
                    404,
                    {"Type": "User", "message": f"Function not found: {name}"},
                    {"x-amzn-ErrorType": "ResourceNotFoundException"},
                )

            def do_GET(self) -> None:
                match = _CONFIG.match(self.path)
                function = server.function(unquote(match.group(1))) if match else None
                if function is None:
                    self._not_found(unquote(match.group(1)) if match else self.path)
                    return
                spec = function.spec
                self._reply(200, {"FunctionName": spec.name, "FunctionArn": spec.arn, "Timeout": int(spec.timeout)})

            def do_POST(self) -> None:
                match = _INVOKE.match(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                function = server.function(unquote(match.group(1))) if match else None
                if function is None:
                    self._not_found(unquote(match.group(1)) if match else self.path)
                    return
                try:
                    event = json.loads(raw or b"{}")
                except ValueError:
                    self._reply(
                        400,
                        {"Type": "User", "message": "payload is not JSON"},
                        {"x-amzn-ErrorType": "InvalidRequestContentException"},
                    )
                    return
                if self.headers.get("X-Amz-Invocation-Type", "RequestResponse") == "Event":
                    function.submit(event)
                    self._reply(202, {})
                    return
                ok, body = function.invoke_sync(event)
                self._reply(200, body, None if ok else {"X-Amz-Function-Error": "Unhandled"})

        return Handler
