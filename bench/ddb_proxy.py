"""A counting proxy in front of DynamoDB Local, on loopback: every request of every process, as DynamoDB sees it.

The drain workload's handlers run in child processes of the local Lambda endpoint, so botocore hooks in
the harness can't see their requests. Pointing the stack's ``AWS_ENDPOINT_URL_DYNAMODB`` here counts them
all on the DynamoDB side instead, with no change to the code that runs in Lambda.

Run in its own process (``python -m bench.ddb_proxy UPSTREAM_URL``; it prints ``PORT <n>`` and serves until
its stdin closes), so that forwarding never competes for the GIL with the stack being measured. Keep-alive
both ways (HTTP/1.1); one upstream connection per serving thread. Stdlib only.

Each request is recorded as ``[time.time() at arrival, operation, caller]``: the operation from the
``X-Amz-Target`` header (``DynamoDB_20120810.Query`` -> ``Query``; the stream API's as ``Streams.GetRecords``),
the caller from the ``app/<id>`` part of botocore's User-Agent (set by ``AWS_SDK_UA_APP_ID``; ``-`` if none).

Control API (the harness's): ``GET /_bench/requests?since=<i>`` returns ``{"next": j, "requests": [...]}``,
the records from index ``i`` on.
"""

from __future__ import annotations

import http.client
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.serving import serve_until_stdin_closes

_APP = re.compile(r"(?:^|\s)app/(\S+)")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "te", "upgrade"}


class Record:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[list[Any]] = []

    def add(self, operation: str, caller: str) -> None:
        entry = [time.time(), operation, caller]
        with self.lock:
            self.requests.append(entry)

    def since(self, index: int) -> tuple[int, list[list[Any]]]:
        with self.lock:
            return len(self.requests), self.requests[index:]


RECORD = Record()
UPSTREAM: tuple[str, int] = ("127.0.0.1", 8000)
_local = threading.local()


def operation_of(target: str | None) -> str:
    if not target:
        return "?"
    service, _, operation = target.partition(".")
    return f"Streams.{operation}" if service.startswith("DynamoDBStreams") else operation


def caller_of(user_agent: str | None) -> str:
    match = _APP.search(user_agent or "")
    return match.group(1) if match else "-"


def _upstream() -> http.client.HTTPConnection:
    connection = getattr(_local, "connection", None)
    if connection is None:
        connection = _local.connection = http.client.HTTPConnection(*UPSTREAM, timeout=60)
    return connection


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/_bench/requests":
            self._forward(b"")
            return
        since = int(parse_qs(url.query).get("since", ["0"])[0])
        index, requests = RECORD.since(since)
        data = json.dumps({"next": index, "requests": requests}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        RECORD.add(operation_of(self.headers.get("X-Amz-Target")), caller_of(self.headers.get("User-Agent")))
        self._forward(body)

    def _forward(self, body: bytes) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        for attempt in (1, 2):
            connection = _upstream()
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                # A kept-alive connection that DynamoDB Local closed meanwhile: sent again once, on a new one.
                connection.close()
                _local.connection = None
                if attempt == 2:
                    self.send_error(502, explain=repr(exc))
                    return
            except (OSError, http.client.HTTPException) as exc:  # never sent twice: the client sees a 502
                connection.close()
                _local.connection = None
                self.send_error(502, explain=repr(exc))
                return
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that exits drops its connections
            super().handle_error(request, client_address)


def main() -> None:
    global UPSTREAM
    upstream = urlsplit(sys.argv[1])
    UPSTREAM = (upstream.hostname or "127.0.0.1", upstream.port or 80)
    server = Server(("127.0.0.1", 0), Handler)
    serve_until_stdin_closes(server)


if __name__ == "__main__":
    main()
