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

import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bench.serving import LoopbackServer, Upstream, forward, json_answer, reply, serve_until_stdin_closes

_APP = re.compile(r"(?:^|\s)app/(\S+)")


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
UPSTREAM = Upstream("http://127.0.0.1:8000")


def operation_of(target: str | None) -> str:
    if not target:
        return "?"
    service, _, operation = target.partition(".")
    return f"Streams.{operation}" if service.startswith("DynamoDBStreams") else operation


def caller_of(user_agent: str | None) -> str:
    match = _APP.search(user_agent or "")
    return match.group(1) if match else "-"


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
        reply(self, json_answer(200, {"next": index, "requests": requests}))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        RECORD.add(operation_of(self.headers.get("X-Amz-Target")), caller_of(self.headers.get("User-Agent")))
        self._forward(body)

    def _forward(self, body: bytes) -> None:
        forward(self, UPSTREAM, body)


def main() -> None:
    global UPSTREAM
    UPSTREAM = Upstream(sys.argv[1])
    serve_until_stdin_closes(LoopbackServer(Handler))


if __name__ == "__main__":
    main()
