"""``serve --workers N``: uvicorn's supervisor, except that SIGHUP reloads the routing file.

uvicorn's supervisor answers SIGHUP by replacing every worker process (a restart: in-memory
circuit breakers and connection pools start over, and a worker that cannot start keeps the old
one without saying why in the API). Here SIGHUP is forwarded to each worker instead, and each
worker reloads its routing file in place, gated on validity and the file's own tests
(``runtime/reload.py``). A worker asked over HTTP (``POST /admin/reload``) sends SIGHUP to the
supervisor, whose pid it finds in ``ROUTER_SUPERVISOR_PID``, so every worker follows.

A worker that dies is replaced, as uvicorn does. What differs:

- A replacement that fails to start (the database away for ``STARTUP_DB_WAIT_S``, say) is tried
  again, one, two, four... up to 30 s later, while another worker serves. uvicorn stopped the
  healthy workers too and exited 0: one crash during a database outage ended the service, and
  a supervisor restarting on failure (systemd, Docker) saw a clean exit. Only when no worker is
  left does it stop, and ``serve`` then exits 3, uvicorn's status for a failed start.
- A dead worker's live gauges leave ``/metrics`` (``mark_process_dead``): the pool sizes and
  requests in flight of every worker ever killed stayed in the sums for ever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable

from prometheus_client import multiprocess
from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors import Multiprocess
from uvicorn.supervisors.multiprocess import Process

from router_service.observability.metrics import MULTIPROC_ENV

SUPERVISOR_ENV = "ROUTER_SUPERVISOR_PID"
RESTART_BACKOFF_CAP_S = 30.0

logger = logging.getLogger("uvicorn.error")


class ReloadingSupervisor(Multiprocess):
    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self.failed = False  # stopped because no worker could start: ``serve`` exits 3
        self._retry_at: dict[int, float] = {}  # worker slot -> when to start it again
        self._failures: dict[int, int] = {}  # worker slot -> failed starts in a row

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        retry_at, failures = self._retry_at, self._failures
        for idx, process in enumerate(self.processes):
            if idx in retry_at:
                if time.monotonic() >= retry_at[idx]:
                    del retry_at[idx]
                    self.processes[idx] = self._started()
                continue
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                failures.pop(idx, None)
                continue
            process.kill()  # hung: kill it
            process.join()
            _forget_metrics_of(process.pid)
            if self.should_exit.is_set():
                return
            if process.exitcode != STARTUP_FAILURE:
                logger.info("Child process [%s] died", process.pid)
                self.processes[idx] = self._started()
                continue
            if not self._others_serve(idx):
                logger.error(
                    "Child process [%s] failed to start, and no worker serves: stopping",
                    process.pid,
                )
                self.failed = True
                self.should_exit.set()
                return
            failures[idx] = failures.get(idx, 0) + 1
            delay = min(2.0 ** (failures[idx] - 1), RESTART_BACKOFF_CAP_S)
            logger.error(
                "Child process [%s] failed to start; the other workers serve; trying again in %g s",
                process.pid,
                delay,
            )
            retry_at[idx] = time.monotonic() + delay

    def _started(self) -> Process:
        process = Process(self.config, self.sockets)
        process.start()
        return process

    def _others_serve(self, idx: int) -> bool:
        return any(
            other.process.is_alive()
            for at, other in enumerate(self.processes)
            if at != idx and at not in self._retry_at
        )

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


def _forget_metrics_of(pid: int | None) -> None:
    """Take a dead worker's live gauges out of the shared metrics directory."""
    if pid is not None and os.environ.get(MULTIPROC_ENV):
        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
