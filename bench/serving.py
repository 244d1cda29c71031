"""How the benchmark's loopback servers run in a process of their own, and how the proxies forward (stdlib only).

The harness starts each with ``python -m bench.<server>`` (:func:`start_server`), reads the port it prints, and
stops it by closing its standard input (or by exiting): a server never outlives the run that started it.

The DynamoDB proxies (``bench.ddb_proxy``, which counts, and ``bench.ddb_limits``, which refuses as DynamoDB
does) forward to DynamoDB Local through :class:`Upstream`: keep-alive both ways (HTTP/1.1), one upstream
connection per serving thread.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"})


def serve_until_stdin_closes(server: ThreadingHTTPServer) -> None:
    """Print ``PORT <n>``, serve until the harness closes our stdin, then stop."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"PORT {server.server_address[1]}", flush=True)
    sys.stdin.read()
    server.shutdown()
    server.server_close()


class LoopbackServer(ThreadingHTTPServer):
    """A threading server on 127.0.0.1 (a free port): many keep-alive clients at once, quiet when one exits."""

    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that exits drops its connections
            super().handle_error(request, client_address)


def start_server(module: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m <module> ARGS`` (a server of this folder) and return it with its URL, once it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("PORT "):
        process.kill()
        process.wait()
        raise RuntimeError(f"{module} did not start: {line!r}")
    return process, f"http://127.0.0.1:{line.split()[1]}"


def stop_server(process: subprocess.Popen[str]) -> None:
    """Close its stdin (it shuts down by itself); kill it if it has not within 10 s."""
    if process.stdin:
        process.stdin.close()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class UpstreamError(Exception):
    """The upstream gave no answer: the client sees a 502."""


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


class Upstream:
    """The server behind a proxy, one kept-alive connection per serving thread."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = http.client.HTTPConnection(*self.address, timeout=60)
        return connection

    def _drop(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        self._local.connection = None

    def exchange(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        """One request and its answer. A kept-alive connection the upstream closed meanwhile is sent again once,
        on a new one; any other failure is never sent twice (it raises :class:`UpstreamError`)."""
        for attempt in (1, 2):
            connection = self._connection()
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                return Answer(response.status, response.getheaders(), response.read())
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self._drop(connection)
                if attempt == 2:
                    raise UpstreamError(repr(exc)) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop(connection)
                raise UpstreamError(repr(exc)) from exc
        raise AssertionError("unreachable")


def json_answer(status: int, body: Any, headers: dict[str, str] | None = None) -> Answer:
    """A JSON answer (the control APIs', and the DynamoDB errors a proxy makes up)."""
    data = json.dumps(body).encode()
    return Answer(status, [("Content-Type", "application/json"), *(headers or {}).items()], data)


def request_headers(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    """The client's headers, as a proxy passes them on (hop-by-hop ones dropped)."""
    return {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}


def reply(handler: BaseHTTPRequestHandler, answer: Answer) -> None:
    """Send ``answer`` to the client, its length recomputed."""
    handler.send_response(answer.status)
    for key, value in answer.headers:
        if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
            handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(answer.body)))
    handler.end_headers()
    handler.wfile.write(answer.body)


def forward(handler: BaseHTTPRequestHandler, upstream: Upstream, body: bytes) -> None:
    """Pass the client's request to the upstream as it came, and its answer back (a 502 if there is none)."""
    try:
        answer = upstream.exchange(handler.command, handler.path, body, request_headers(handler))
    except UpstreamError as exc:
        handler.send_error(502, explain=str(exc))
        return
    reply(handler, answer)
