"""Example worker: the one method a user writes. Its behaviour is set by the payload so that the
demo and the tests can make it slow, flaky or crash:

- ``sleep``: seconds to work;
- ``fail_attempts``: raise on attempts up to this number (e.g. 1: the first attempt fails);
- ``always_fail``: raise on every attempt;
- ``crash``: exit the process without a report (only the on-failure destination notices).
"""

import os
import time

from sosw.worker import Worker


class ExampleWorker(Worker):
    def handler(self, event, context=None):
        self._attempt = event.get("attempts", 1)
        return super().handler(event, context)

    def process(self, payload):
        time.sleep(float(payload.get("sleep", 0)))
        if payload.get("crash"):
            os._exit(1)
        if payload.get("always_fail") or self._attempt <= int(payload.get("fail_attempts", 0)):
            raise RuntimeError(f"failing on purpose (attempt {self._attempt})")
        return {"echo": payload.get("echo"), "attempt": self._attempt}


handler = ExampleWorker().handler
