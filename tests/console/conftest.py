"""The console's page-level tests: its Starlette app over a TaskManager on moto, through Starlette's TestClient.

``console`` signs in as a browser does (the token URL, then the cookie); ``anonymous`` has no cookie.
Requests name the console's own host (127.0.0.1:8765), as a browser on the printed URL does.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from moto import mock_aws
from starlette.testclient import TestClient

from sosw import aws
from sosw.clock import ManualClock
from sosw.console.web.actions import Actions
from sosw.console.web.app import ConsoleOptions, create_app
from sosw.console.web.metrics import CompletionMetrics
from sosw.console.web.security import Guard
from sosw.local.tables import create_tables, prefixed_config
from sosw.managers.ecology import EcologyManager
from sosw.managers.task import TaskManager

TOKEN = "test-token-0123456789"
ORIGIN = "http://127.0.0.1:8765"
SAME_SITE = {"Sec-Fetch-Site": "same-origin"}
LABOURERS = {
    "alpha": {"max_simultaneous_invocations": 3, "duration": 60, "cooldown": 30, "max_duration": 60},
    "beta": {"max_simultaneous_invocations": 2, "duration": 60, "cooldown": 30, "max_duration": 60},
}
_prefixes = itertools.count()


@dataclass
class Console:
    tm: TaskManager
    client: TestClient
    clock: ManualClock
    actions: Actions
    config: dict[str, Any]

    def labourer(self, name: str = "alpha") -> Any:
        return self.tm.get_labourer(name)

    def post(self, url: str, data: Any = None, **headers: str) -> Any:
        return self.client.post(url, data=data, headers={**SAME_SITE, **headers}, follow_redirects=False)

    def kill(self, task: dict[str, Any], error_type: str = "Boom", message: str = "it broke\nat line 2") -> None:
        """Close a queued task as dead with this last error (the Scavenger's own close)."""
        assert self.tm.archive_task({**task, "last_error": {"type": error_type, "message": message}}, completed=False)


@pytest.fixture
def aws_moto() -> Iterator[None]:
    with mock_aws():
        yield


@pytest.fixture
def make_console(aws_moto: None) -> Callable[..., Console]:
    def make(*, read_only: bool = False, labourers: dict[str, Any] | None = None, **config: Any) -> Console:
        cfg = prefixed_config(f"c{os.getpid()}_{next(_prefixes)}_", {"labourers": labourers or LABOURERS, **config})
        create_tables(aws.dynamodb_client(), cfg)
        clock = ManualClock(1_800_000_000)
        tm = TaskManager(cfg, clock=clock, ecology_client=EcologyManager(cfg, clock=clock))
        actions = Actions(tm, pause_seconds=0, sleep=lambda s: None)
        guard = Guard(token=TOKEN, read_only=read_only)
        app = create_app(tm, ConsoleOptions(guard=guard), actions=actions, metrics=CompletionMetrics(), clock=clock.now)
        client = TestClient(app, base_url=ORIGIN)
        signed_in = client.get(f"/?token={TOKEN}", follow_redirects=False)
        assert signed_in.status_code == 303
        return Console(tm, client, clock, actions, cfg)

    return make


@pytest.fixture
def console(make_console: Callable[..., Console]) -> Console:
    return make_console()
