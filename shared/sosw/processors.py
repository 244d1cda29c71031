"""sosw's processor style for the roles: ``Orchestrator(custom_config)``, then ``orchestrator(event)``.

sosw users' own Lambdas build sosw's processors from a config dict and call them with the event; their
tests replace the processors' clients (``scavenger.task_client = MagicMock()``). The roles of this package
take a TaskManager instead (``Orchestrator(task_manager).run()``); this module gives them sosw's face as
well, so both work:

- the constructor takes sosw's ``custom_config`` (positionally or by name) and its ``test`` flag;
- the TaskManager config is the stack's (the SSM parameter named by ``SOSW_CONFIG_PARAMETER``, when set),
  then what ``sosw.app.get_config`` gives for the function (a name sosw users' tests patch), then
  ``custom_config["task_config"]`` (the WorkerAssistant: ``custom_config`` itself, as sosw's);
- calling the processor runs it once and returns None, as sosw's do; the rest of sosw's ``Processor``
  (``sosw.app``: ``stats``, ``get_stats``, ``reset_stats``, ``die``, ...), ``task_client`` and
  ``get_db_field_name`` are there, and the clients are settable.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from sosw import app
from sosw.config import deep_merge
from sosw.errors import InvalidInputError
from sosw.managers.task import TaskManager

__all__ = ["SoswProcessor", "SoswWorkerAssistant", "processor_task_manager"]


def processor_task_manager(custom_config: Mapping[str, Any] | None, task_config_key: str | None) -> TaskManager:
    """The TaskManager of a processor built sosw's way, from its ``custom_config`` (see the module's docstring)."""
    if custom_config is not None and not isinstance(custom_config, Mapping):
        raise InvalidInputError("custom_config", f"expected a dict, got {type(custom_config).__name__}")
    config: dict[str, Any] = {}
    if os.environ.get("SOSW_CONFIG_PARAMETER"):
        from sosw.runtime import load_config

        config = load_config()
    function_config = app.get_config(f"{os.environ.get('AWS_LAMBDA_FUNCTION_NAME')}_config") or {}
    for source in (function_config, custom_config or {}):
        part = (source.get(task_config_key) or {}) if task_config_key else source
        config = deep_merge(config, part)
    return TaskManager(config)


class SoswProcessor(app.Processor):
    """sosw's Processor face of a role; the role keeps its own ``run()``.

    A subclass's ``__init__`` calls :meth:`_task_manager_of` with what it was given: a TaskManager (this
    package's way) or sosw's ``custom_config``.
    """

    #: The key of ``custom_config`` that holds the TaskManager config (None: the config itself).
    TASK_CONFIG_KEY: str | None = "task_config"

    tm: TaskManager

    def _task_manager_of(self, given: Any, kwargs: dict[str, Any]) -> TaskManager:
        custom_config = kwargs.pop("custom_config", None)
        self.test = bool(kwargs.pop("test", False)) or os.environ.get("STAGE") in ("test", "autotest")
        if kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected keyword argument(s) {sorted(kwargs)}")
        self.stats: defaultdict[str, Any] = defaultdict(int)
        self.result: defaultdict[str, Any] = defaultdict(int)
        self._account_from_context()
        if isinstance(given, TaskManager):
            self.config: dict[str, Any] = {}
            return given
        if given is not None and custom_config is not None:
            raise TypeError(f"{type(self).__name__}() got custom_config twice")
        self.config = dict(given if given is not None else custom_config or {})
        tm = processor_task_manager(self.config, self.TASK_CONFIG_KEY)
        # sosw's init_clients: the role's TaskManager is the one above; other names as sosw's Processor builds them.
        self.register_clients([c for c in self.config.get("init_clients", []) if app._underscored(c) != "task"])
        return tm

    @property
    def task_client(self) -> TaskManager:
        """sosw's name of the processor's TaskManager."""
        return self.tm

    @task_client.setter
    def task_client(self, client: TaskManager) -> None:
        self.tm = client

    def get_db_field_name(self, key: str) -> str:
        """The table's name of a task field (sosw's ``field_names`` config), as the TaskManager says."""
        return self.tm.get_db_field_name(key)

    def __call__(self, event: Any = None, *args: Any, **kwargs: Any) -> None:
        """Run once, as sosw's processors do when called; returns None (``run()`` returns the report)."""
        self.last_report = self.run()  # type: ignore[attr-defined]
        super().__call__(event)


class SoswWorkerAssistant(SoswProcessor):
    """sosw's WorkerAssistant face: ``assistant(event)`` and ``mark_task_as_completed(task_id, stats, result)``."""

    TASK_CONFIG_KEY = None  # sosw's WorkerAssistant config holds dynamo_db_config itself

    def __call__(self, event: Any = None, *args: Any, **kwargs: Any) -> None:
        """Apply one report, as sosw's WorkerAssistant does: returns None; a refused report is logged, not raised.

        As sosw, it takes ``actions`` (a list of one action) for ``action``, and ``stats`` / ``result``
        given as JSON text.
        """
        if isinstance(event, Mapping):
            event = dict(event)
            actions = event.pop("actions", None)
            if "action" not in event and isinstance(actions, list) and len(actions) == 1:
                event["action"] = actions[0]
            for key in ("stats", "result"):
                if isinstance(event.get(key), str):
                    try:
                        event[key] = json.loads(event[key])
                    except ValueError as exc:
                        raise InvalidInputError(key, f"not valid JSON: {exc}") from exc
        self.handle(event)  # type: ignore[attr-defined]
        app.Processor.__call__(self, event)

    @property
    def dynamo_db_client(self) -> Any:
        """The DynamoDB client the reports are written with (the TaskManager's; settable, as in sosw)."""
        return self.tm.dynamo_db_client

    @dynamo_db_client.setter
    def dynamo_db_client(self, client: Any) -> None:
        self.tm.dynamo_db_client = client

    def get_db_field_name(self, field: str) -> str:
        """sosw's WorkerAssistant names the argument ``field``."""
        return self.tm.get_db_field_name(field)

    def mark_task_as_completed(self, task_id: str, stats: Any = None, result: Any = None) -> None:
        """sosw's call: the task's current attempt completed (fenced: a task not invoked is left untouched)."""
        self.tm.mark_task_completed(task_id, result=result, stats=stats)

    def mark_task_as_failed(self, task_id: str, stats: Any = None, result: Any = None) -> None:
        """sosw's call: the task's current attempt failed (retried or closed by the Scavenger at once)."""
        self.tm.mark_task_failed(task_id, result=result, stats=stats)
