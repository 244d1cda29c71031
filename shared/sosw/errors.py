"""One exception hierarchy for the package.

Every class also derives from the built-in exception that sosw (and the seed) names for the same
situation, so code written for sosw (``except RuntimeError``, ``except ValueError``) keeps working.
"""

from __future__ import annotations

from typing import Any


class SoswError(Exception):
    """Base of every error raised on purpose by this package."""


class ConfigError(SoswError, ValueError):
    """The configuration (or a labourer's settings) is invalid. The message names the key."""


class InvalidInputError(SoswError, ValueError):
    """A caller passed a value that can't be accepted; ``field`` and ``limit`` say which and why.

    Raised before anything is written.
    """

    def __init__(self, field: str, message: str, limit: Any = None) -> None:
        self.field = field
        self.limit = limit
        text = f"{field}: {message}"
        if limit is not None:
            text += f" (limit: {limit})"
        super().__init__(text)


class UnknownLabourerError(InvalidInputError):
    """The labourer id is not configured."""

    def __init__(self, labourer_id: str, known: list[str]) -> None:
        super().__init__(
            "labourer_id",
            f"unknown labourer {labourer_id!r}; configured labourers: {sorted(known)}",
        )
        self.labourer_id = labourer_id


class TaskExistsError(SoswError, ValueError):
    """A task with this ``task_id`` already exists; it was neither overwritten nor duplicated."""

    def __init__(self, task_id: str, table: str) -> None:
        super().__init__(f"task_id: task {task_id!r} already exists in table {table!r}; nothing was written")
        self.task_id = task_id
        self.table = table


class NoFreeSlotError(SoswError, RuntimeError):
    """The claim was refused: the labourer already runs as many tasks as its cap allows. Nothing was written."""

    def __init__(self, task_id: str, labourer_id: str, cap: int | None) -> None:
        super().__init__(f"task {task_id!r} not claimed: labourer {labourer_id!r} runs its cap of {cap} tasks")
        self.task_id = task_id
        self.labourer_id = labourer_id
        self.cap = cap


class TaskAlreadyInvokedError(SoswError, RuntimeError):
    """The claim failed: the task is no longer queued (another orchestrator took it, or it is gone).

    A ``RuntimeError``, as the seed's ``mark_task_invoked`` documents.
    """

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} is already invoked or no longer in the queue")
        self.task_id = task_id


class QueueCeilingError(SoswError, RuntimeError):
    """A queued greenfield would come too close to the invoked range (see DOMAIN.md "Ceiling")."""


class InvokeError(SoswError, RuntimeError):
    """Invoking the worker Lambda failed."""

    def __init__(self, task_id: str, message: str, *, released: bool) -> None:
        super().__init__(f"task {task_id!r}: {message}")
        self.task_id = task_id
        #: True when the claim was released (the task is back at the head of the queue, attempt not counted).
        self.released = released


class InvokeRejectedError(InvokeError):
    """Lambda refused the Invoke (4xx: throttled, not found, ...). Nothing was delivered; claim released."""


class InvokeUncertainError(InvokeError):
    """The Invoke timed out or failed with a 5xx: it may have been delivered. The task stays invoked."""


class BulkCreateError(SoswError, RuntimeError):
    """A bulk creation stopped part-way: ``written`` ids are stored; ``unsure`` ones may or may not be.

    Create the ``unsure`` ones again with ``ensure_tasks`` and the same ids: that is idempotent. Chunks
    are written in parallel, so unsure ids may sit between written ones: created again, they join
    the end of the queue, after the tasks written with them.
    """

    def __init__(self, written: list[str], unsure: list[str]) -> None:
        super().__init__(
            f"bulk creation stopped: {len(written)} task(s) written, {len(unsure)} unsure; "
            "create the unsure ones again with ensure_tasks() and their ids"
        )
        self.written = written
        self.unsure = unsure
