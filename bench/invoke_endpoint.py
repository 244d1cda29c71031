"""A Lambda API on loopback for the benchmark: Invoke and GetFunctionConfiguration, answered after a delay.

Run in its own process (``python -m bench.invoke_endpoint``; it prints ``PORT <n>`` and serves until its
stdin closes), so that serving invocations never competes for the GIL with the stack being measured.
Keep-alive (HTTP/1.1), as Lambda's endpoint. Stdlib only: both virtualenvs can run it.

Control API (the harness's, not Lambda's):

- ``PUT /_bench/functions/<name>`` ``{"delay_ms": 20, "timeout": 900}``: the function exists from now on;
  every request for it is answered after ``delay_ms``; its configured Timeout is ``timeout``.
- ``GET /_bench/functions/<name>``: ``{"count": n, "invocations": [event, ...]}``, the events the worker
  received, in order of arrival (``?count=1``: the count only).

An Invoke of an unknown function is refused (404 ResourceNotFoundException), as Lambda does.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.serving import serve_until_stdin_closes

_INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations")
_CONFIG = re.compile(r"^/2015-03-31/functions/([^/]+)/configuration")
_CONTROL = re.compile(r"^/_bench/functions/([^/?]+)(\?count=1)?$")


class Functions:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.settings: dict[str, dict[str, Any]] = {}
        self.invocations: dict[str, list[dict[str, Any]]] = {}


FUNCTIONS = Functions()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
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

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _settings(self, name: str) -> dict[str, Any] | None:
        with FUNCTIONS.lock:
            return FUNCTIONS.settings.get(name)

    def do_GET(self) -> None:
        control = _CONTROL.match(self.path)
        if control:
            with FUNCTIONS.lock:
                calls = list(FUNCTIONS.invocations.get(control.group(1), []))
            self._reply(200, {"count": len(calls)} if control.group(2) else {"count": len(calls), "invocations": calls})
            return
        match = _CONFIG.match(self.path)
        settings = self._settings(match.group(1)) if match else None
        if not match or settings is None:
            self._not_found(match.group(1) if match else self.path)
            return
        time.sleep(settings["delay_ms"] / 1000)
        self._reply(200, {"FunctionName": match.group(1), "Timeout": settings["timeout"]})

    def do_PUT(self) -> None:
        control = _CONTROL.match(self.path)
        body = json.loads(self._body() or b"{}")
        if not control:
            self._reply(404, {"message": "not found"})
            return
        with FUNCTIONS.lock:
            FUNCTIONS.settings[control.group(1)] = {
                "delay_ms": float(body.get("delay_ms", 0)),
                "timeout": int(body.get("timeout", 900)),
            }
            FUNCTIONS.invocations.setdefault(control.group(1), [])
        self._reply(200, {"ok": True})

    def do_POST(self) -> None:
        body = self._body()
        match = _INVOKE.match(self.path)
        settings = self._settings(match.group(1)) if match else None
        if not match or settings is None:
            self._not_found(match.group(1) if match else self.path)
            return
        time.sleep(settings["delay_ms"] / 1000)
        event = json.loads(body or b"{}")
        with FUNCTIONS.lock:
            FUNCTIONS.invocations[match.group(1)].append(event)
        invocation_type = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
        self._reply(202 if invocation_type == "Event" else 200, {})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # 16 invoking threads may connect at once: a listen backlog of 5 resets some

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that exits drops its keep-alive connections
            super().handle_error(request, client_address)


def main() -> None:
    server = Server(("127.0.0.1", 0), Handler)
    serve_until_stdin_closes(server)


if __name__ == "__main__":
    main()
