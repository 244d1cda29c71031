"""moto's server as a DynamoDB for machines without Java, serving one request at a time.

moto's DynamoDB backend takes no locks: two conditional writes served at once could both pass their
condition. Serving requests one after another makes every condition and transaction atomic, which
is what the TaskManager's guarantees rest on (the race test runs against it too).
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from sosw.local.dynamodb_local import free_port


class SerialMotoServer:
    """``with SerialMotoServer() as ddb: ddb.endpoint_url``: moto, one request at a time, on loopback."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._server = None
        self._thread: threading.Thread | None = None

    def start(self) -> SerialMotoServer:
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        app = DomainDispatcherApplication(create_backend_app)
        # threaded=False: werkzeug's plain server handles one connection after another.
        self._server = make_server("127.0.0.1", self.port, app, threaded=False, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-dynamodb", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> SerialMotoServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
