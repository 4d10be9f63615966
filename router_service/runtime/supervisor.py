"""``serve --workers N``: uvicorn's supervisor, except that SIGHUP reloads the routing file.

uvicorn's supervisor answers SIGHUP by replacing every worker process (a restart: in-memory
circuit breakers and connection pools start over, and a worker that cannot start keeps the old
one without saying why in the API). Here SIGHUP is forwarded to each worker instead, and each
worker reloads its routing file in place, gated on validity and the file's own tests
(``runtime/reload.py``). A worker asked over HTTP (``POST /admin/reload``) sends SIGHUP to the
supervisor, whose pid it finds in ``ROUTER_SUPERVISOR_PID``, so every worker follows.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable

from uvicorn.supervisors import Multiprocess

SUPERVISOR_ENV = "ROUTER_SUPERVISOR_PID"


class ReloadingSupervisor(Multiprocess):
    def handle_hup(self) -> None:
        for process in self.processes:
            if process.pid is not None:
                with contextlib.suppress(ProcessLookupError):  # a worker being replaced
                    os.kill(process.pid, signal.SIGHUP)


def peer_notifier() -> Callable[[], None] | None:
    """In a worker under ``ReloadingSupervisor``: a function that makes every worker reload."""
    pid = os.environ.get(SUPERVISOR_ENV)
    if not pid or not pid.isdigit() or int(pid) == os.getpid():
        return None
    supervisor = int(pid)

    def notify() -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(supervisor, signal.SIGHUP)

    return notify
