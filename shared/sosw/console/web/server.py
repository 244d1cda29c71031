"""Serving the console: uvicorn on loopback, a fresh token, the URL printed once.

``sosw console`` runs :func:`serve` in the foreground; ``sosw local`` runs :class:`ConsoleServer` in a
thread beside its stack. Listening beyond loopback takes ``allow_remote=True`` and prints a warning:
the console speaks plain HTTP, so its token and every page cross the network readable.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TextIO

from sosw.console.logs import LogSource
from sosw.console.web.actions import ACTION_LOG
from sosw.console.web.app import ConsoleOptions, create_app
from sosw.console.web.metrics import CompletionMetrics
from sosw.console.web.security import LOOPBACK_HOSTS, Guard
from sosw.errors import InvalidInputError
from sosw.managers.task import TaskManager

__all__ = ["ConsoleServer", "is_loopback", "plan"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def plan(host: str, allow_remote: bool, allow_hosts: Sequence[str] = ()) -> tuple[tuple[str, ...], str | None]:
    """The Host names to accept and the warning to print, or a refusal when ``host`` is not loopback and
    ``allow_remote`` was not given."""
    if not is_loopback(host) and not allow_remote:
        raise InvalidInputError(
            "host", f"{host} is not a loopback address: add --allow-remote to listen there (plain HTTP)"
        )
    names = [*LOOPBACK_HOSTS, *allow_hosts]
    if host not in ("0.0.0.0", "::") and host not in names:
        names.append(host)
    warning = None
    if not is_loopback(host):
        warning = (
            f"WARNING: the console listens on {host}, beyond this machine, in plain HTTP: its token, its "
            "pages and your actions can be read on the way. Prefer an SSH tunnel to 127.0.0.1."
        )
    return tuple(dict.fromkeys(names)), warning


def _log_actions(stream: TextIO) -> None:
    """Each action as one line on ``stream`` (stderr), whoever embeds the console."""
    if not any(getattr(h, "_sosw_console", False) for h in ACTION_LOG.handlers):
        handler = logging.StreamHandler(stream)
        handler._sosw_console = True  # type: ignore[attr-defined]
        handler.setFormatter(logging.Formatter("%(asctime)s sosw-console %(message)s"))
        ACTION_LOG.addHandler(handler)
    ACTION_LOG.setLevel(logging.INFO)


class ConsoleServer:
    """``with ConsoleServer(tm, port=0) as console: print(console.url)``: the console in a thread."""

    def __init__(
        self,
        tm: TaskManager,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        read_only: bool = False,
        allow_remote: bool = False,
        allow_hosts: Sequence[str] = (),
        log_source: LogSource | None = None,
        where: str = "",
        refresh_seconds: int = 5,
        token: str | None = None,
        metrics_namespace: str | None = None,
    ) -> None:
        import uvicorn

        hosts, self.warning = plan(host, allow_remote, allow_hosts)
        self.token = token or secrets.token_urlsafe(32)
        guard = Guard(token=self.token, read_only=read_only, allowed_hosts=hosts)
        options = ConsoleOptions(guard=guard, log_source=log_source, refresh_seconds=refresh_seconds, where=where)
        self.app = create_app(tm, options, metrics=CompletionMetrics(namespace=metrics_namespace))
        self.host = host
        # The access log would write every URL, the first one with its token: ours leaves query strings out.
        config = uvicorn.Config(self.app, host=host, port=port, access_log=False, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        sockets = self._server.servers[0].sockets if self._server.servers else []
        return int(sockets[0].getsockname()[1]) if sockets else 0

    @property
    def url(self) -> str:
        """The URL to open: its token signs the browser in (and leaves the address bar at once)."""
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        shown = f"[{shown}]" if ":" in shown else shown
        return f"http://{shown}:{self.port}/?token={self.token}"

    def start(self, timeout: float = 30.0) -> ConsoleServer:
        _log_actions(sys.stderr)
        self._thread = threading.Thread(target=self._server.run, name="sosw-console", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the console could not listen on {self.host} (is the port taken?)")
            if time.monotonic() > deadline:
                raise RuntimeError("the console did not start")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> ConsoleServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Until Ctrl-C (or the server stops)."""
        while self._thread is not None and self._thread.is_alive():
            sleep(0.5)

    def announce(self, out: TextIO = sys.stdout) -> None:
        if self.warning:
            print(self.warning, file=sys.stderr, flush=True)
        print(f"console: {self.url}", file=out, flush=True)
