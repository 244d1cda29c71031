"""A stand-in for an imported worker (``arn`` in cdk.json), whose code is not here to run locally.

``sosw local --stub legacy=completes`` runs this handler under the imported function's name: it takes
deliveries like a real worker (the start guard, then a report through the WorkerAssistant), and
does what ``SOSW_STUB`` says: ``completes``, ``fails`` (raises ``StubFailure``) or ``sleeps:S``
(works S seconds, then completes; past the function's timeout it is killed like a real one).
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

from sosw.worker import Worker

__all__ = ["BEHAVIOURS", "StubFailure", "StubWorker", "handler", "parse_behaviour"]

BEHAVIOURS = "completes|fails|sleeps:SECONDS"
_SLEEPS = re.compile(r"sleeps:(\d+(?:\.\d+)?)")


class StubFailure(RuntimeError):
    """What a ``fails`` stub raises: the attempt is reported failed, as a worker's exception would be."""


def parse_behaviour(text: str) -> tuple[str, float]:
    """``completes`` -> ("completes", 0); ``sleeps:2.5`` -> ("sleeps", 2.5). ValueError names what is accepted."""
    if text in ("completes", "fails"):
        return text, 0.0
    match = _SLEEPS.fullmatch(text)
    if match:
        return "sleeps", float(match.group(1))
    raise ValueError(f"expected {BEHAVIOURS}, got {text!r}")


class StubWorker(Worker):
    def process(self, payload: dict[str, Any]) -> Any:
        behaviour, seconds = parse_behaviour(os.environ.get("SOSW_STUB", "completes"))
        self.logger.info("Stub worker", extra={"behaviour": behaviour, "seconds": seconds})
        if behaviour == "fails":
            raise StubFailure("the stub stands in for an imported worker and fails, as --stub asked")
        time.sleep(seconds)
        return {"stub": behaviour}


handler = StubWorker().handler
