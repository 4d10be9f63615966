"""Real router and agent processes for acceptance tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from tests.support.polling import wait_for

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def migrate(env: dict[str, str]) -> None:
    """``router-service migrate`` with ``env`` over this process's environment."""
    subprocess.run(
        [str(BIN / "router-service"), "migrate"],
        env={**os.environ, **env},
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )


def wait_listening(port: int, process: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    """Until something accepts on ``port``; fail at once if the process died instead."""

    def accepting() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_for(accepting, timeout_s, what=f"a listener on port {port}")


def start(
    args: Sequence[str],
    env: dict[str, str],
    port: int,
    stdout: IO[bytes] | None = None,
    stderr: IO[bytes] | None = None,
    preexec: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """``preexec``: run in the child before it executes ``args`` (e.g. to lower a limit)."""
    process = subprocess.Popen(
        list(args),
        env={**os.environ, **env},
        cwd=ROOT,
        start_new_session=True,
        preexec_fn=preexec,
        stdout=stdout or subprocess.DEVNULL,
        stderr=stderr or subprocess.DEVNULL,
    )
    try:
        wait_listening(port, process)
    except BaseException:
        stop(process)
        raise
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the whole process group (``--reload`` and ``make dev`` have children)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
