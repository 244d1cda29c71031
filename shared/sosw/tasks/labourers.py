"""The labourers of a TaskManager: looking one up, and registering them for a run (sosw's
``get_labourer`` and ``register_labourers``), with the EcologyManager that registration consults.

The EcologyManager is reached through sosw's names only (``register_task_manager``, ``get_labourer_status``,
``get_max_labourer_duration``, ``get_labourer_average_duration``), so a subclass or a test double that
replaces one of them is the one consulted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sosw.errors import UnknownLabourerError
from sosw.labourer import Labourer
from sosw.tasks.context import TaskContext

__all__ = ["TaskLabourers"]


class TaskLabourers:
    """Lookup and registration of the configured labourers; ``ecology`` is built on first use by ``make_ecology``."""

    def __init__(self, ctx: TaskContext, make_ecology: Callable[[], Any], ecology: Any = None) -> None:
        self.ctx = ctx
        self._make_ecology = make_ecology
        self._ecology = ecology

    @property
    def ecology(self) -> Any:
        if self._ecology is None:
            self._ecology = self._make_ecology()
        return self._ecology

    @ecology.setter
    def ecology(self, client: Any) -> None:
        self._ecology = client

    def get_labourer(self, labourer_id: str | int) -> Labourer | None:
        """The configured labourer with this id (an int id is its text, as stored); None if there is none."""
        if isinstance(labourer_id, int) and not isinstance(labourer_id, bool):
            labourer_id = str(labourer_id)
        try:
            return self.ctx.get_labourer(labourer_id)
        except UnknownLabourerError:
            return None

    def register_labourers(self, task_manager: Any) -> list[Labourer]:
        """Open the run's windows and set health, max and average duration on every configured labourer.

        The EcologyManager is given ``task_manager`` (the facade) for its two queries, so it builds no second one.
        """
        ecology = self.ecology
        ecology.register_task_manager(task_manager)
        self.ctx.open_run_window()
        for labourer in self.ctx.get_labourers():
            labourer.set_custom_attribute("health", ecology.get_labourer_status(labourer))
            if not labourer.has_attr("max_duration"):
                labourer.set_custom_attribute("max_duration", ecology.get_max_labourer_duration(labourer))
            labourer.set_custom_attribute("average_duration", ecology.get_labourer_average_duration(labourer))
        return self.ctx.get_labourers()

    def max_duration(self, labourer: Labourer) -> float:
        """What a failed or timed-out attempt counts for: the labourer's setting, else the worker's Lambda Timeout."""
        if not labourer.has_attr("max_duration"):
            labourer.set_custom_attribute("max_duration", self.ecology.get_max_labourer_duration(labourer))
        return labourer.get_attr("max_duration")
