"""The disk under Postgres's WAL, timed while the soak runs: how long one small flush takes.

Every signal waits for its outcome's commit, and a commit waits for the WAL's flush; when the
disk stalls, every request in flight waits with it, so one stall of 300 ms puts a few hundred
requests of a one-minute window at 1,000 req/s behind it, and sets the window's p99.
``/proc/pressure/io`` says how much of a window was stalled, not how long one stall lasted. This
probe does: every 20 ms a thread writes 8 KiB and flushes them with ``fdatasync``, on the
filesystem that holds the WAL, and each window reports its slowest flush. That is fifty small
flushes a second beside Postgres's thousand, and it times the disk whatever the router does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from pathlib import Path

import asyncpg

from bench.environment import server_statement

INTERVAL_S = 0.02
BLOCK = b"\0" * 8192


class FlushProbe:
    """Times ``fdatasync`` of one block of ``path`` every ``interval_s`` in a thread of its own."""

    def __init__(self, path: Path, interval_s: float = INTERVAL_S) -> None:
        self.path = path
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._slowest = 0.0
        self._flushes = 0
        self._began: float | None = None  # the flush in progress
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None

    def start(self, *, thread: bool = True) -> None:
        """Opens the file and, unless told otherwise, starts the thread that flushes it."""
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        if not thread:
            return
        self._thread = threading.Thread(target=self._run, name="flush-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.flush_once()

    def flush_once(self) -> None:
        """One timed write and flush (the thread's step; callable alone once started)."""
        assert self._fd is not None, "start() first"
        began = time.perf_counter()
        with self._lock:
            self._began = began
        os.pwrite(self._fd, BLOCK, 0)
        os.fdatasync(self._fd)
        took = time.perf_counter() - began
        with self._lock:
            self._began = None
            self._slowest = max(self._slowest, took)
            self._flushes += 1

    def take(self) -> float | None:
        """The slowest flush since the last call, in ms (one still running counts for as long as
        it has run so far), or None when none was timed."""
        with self._lock:
            slowest, flushes = self._slowest, self._flushes
            if self._began is not None:
                slowest = max(slowest, time.perf_counter() - self._began)
                flushes += 1
            self._slowest, self._flushes = 0.0, 0
        return slowest * 1000 if flushes else None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


WAL_DIRECTORY = "SELECT current_setting('data_directory') || '/pg_wal'"


def probe_path(database_url: str, workdir: Path) -> tuple[Path | None, str]:
    """Where to time flushes: in ``workdir`` when it is on the WAL's filesystem. Otherwise None,
    and why (the probe never writes into Postgres's own directories)."""
    try:
        wal = os.path.realpath(asyncio.run(server_statement(database_url, WAL_DIRECTORY)))
        wal_device = os.stat(wal).st_dev
    except (OSError, asyncpg.PostgresError) as exc:
        return None, f"the WAL's directory is not readable here ({type(exc).__name__})"
    if os.stat(workdir).st_dev != wal_device:
        return None, "the soak's directory is on another filesystem than Postgres's WAL"
    every = f"every {INTERVAL_S * 1000:.0f} ms"
    return workdir / "flush-probe", f"8 KiB written and flushed {every}, beside Postgres's WAL"
