"""A small Lambda API on loopback that records every Invoke (real HTTP; boto3 reaches it through
``AWS_ENDPOINT_URL_LAMBDA``). Tests use it to count deliveries and to make Lambda refuse or fail.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_INVOKE = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations")
_CONFIG = re.compile(r"^/2015-03-31/functions/([^/]+)/configuration")


@dataclass
class Invocation:
    function: str
    invocation_type: str
    event: dict[str, Any]


@dataclass
class InvokeEndpoint:
    """``with InvokeEndpoint() as lam: ...; lam.invocations``.

    ``respond`` decides each Invoke's answer: return None to accept (202), or ``(status, error_code)``
    to refuse; a refused Invoke is not recorded as delivered.
    """

    timeout_seconds: int = 60
    respond: Callable[[Invocation], tuple[int, str] | None] | None = None
    invocations: list[Invocation] = field(default_factory=list)
    refused: list[Invocation] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                match = _CONFIG.match(self.path)
                if not match:
                    self._reply(
                        404, {"Type": "User", "message": "not found"}, {"x-amzn-ErrorType": "ResourceNotFoundException"}
                    )
                    return
                self._reply(200, {"FunctionName": match.group(1), "Timeout": endpoint.timeout_seconds})

            def do_POST(self) -> None:
                match = _INVOKE.match(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b"{}"
                if not match:
                    self._reply(404, {"message": "not found"}, {"x-amzn-ErrorType": "ResourceNotFoundException"})
                    return
                call = Invocation(
                    match.group(1), self.headers.get("X-Amz-Invocation-Type", "RequestResponse"), json.loads(body)
                )
                refusal = endpoint.respond(call) if endpoint.respond else None
                if refusal:
                    status, code = refusal
                    with endpoint._lock:
                        endpoint.refused.append(call)
                    self._reply(status, {"Type": "User", "message": code}, {"x-amzn-ErrorType": code})
                    return
                with endpoint._lock:
                    endpoint.invocations.append(call)
                self._reply(202 if call.invocation_type == "Event" else 200, {})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> InvokeEndpoint:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
