"""Real processes on loopback: routers, demo agents, replayers; each in its own process group.

Every process is started by a ``Processes`` set, which kills whatever is still running when it
closes, so a scenario that fails half-way leaves nothing behind. Readiness is polled with a
deadline; there are no fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import aiohttp

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file is tools/chaos/procs.py)
BIN = Path(sys.executable).parent
ROUTER = str(BIN / "router-service")
START_TIMEOUT_S = 45.0
API_KEY = "chaos-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Proc:
    """One started process (the leader of its own process group) and where its output goes."""

    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.args,
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def returncode(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def signal_group(self, signum: int) -> None:
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signum)

    def kill9(self) -> None:
        """SIGKILL the whole group (uvicorn workers included) and reap the leader."""
        self.signal_group(signal.SIGKILL)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(10)

    def sigterm(self) -> None:
        """SIGTERM to the leader only, as an orchestrator would; it must stop its workers."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)

    async def wait_exit(self, timeout_s: float) -> int | None:
        """The exit code, or None if it still runs after ``timeout_s`` (polled, bounded)."""
        give_up = time.monotonic() + timeout_s
        while time.monotonic() < give_up:
            code = self.returncode()
            if code is not None:
                return code
            await asyncio.sleep(0.05)
        return self.returncode()

    def stop(self) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(10)
        # Whatever the leader did, no member of its group may outlive the scenario.
        self.signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])


@dataclass
class Processes:
    """Owns every process of one scenario; ``close()`` (or leaving the ``with``) kills them all."""

    log_dir: Path
    started: list[Proc] = field(default_factory=list)

    def __enter__(self) -> Processes:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for proc in reversed(self.started):
            proc.stop()

    def spawn(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> Proc:
        count = sum(1 for p in self.started if p.name == name)
        log = self.log_dir / (f"{name}.log" if count == 0 else f"{name}.{count}.log")
        proc = Proc(name, list(args), {**os.environ, **env}, log).start()
        self.started.append(proc)
        return proc


async def wait_http(url: str, proc: Proc, timeout_s: float = START_TIMEOUT_S) -> float:
    """Poll ``url`` until it answers 200; fail at once if ``proc`` died. Returns seconds waited."""
    started = time.monotonic()
    give_up = started + timeout_s
    timeout = aiohttp.ClientTimeout(total=1.0)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.monotonic() < give_up:
            if not proc.alive():
                raise RuntimeError(
                    f"{proc.name} exited with {proc.returncode()} before it was ready: "
                    f"{proc.tail()}"
                )
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return time.monotonic() - started
            await asyncio.sleep(0.05)
    raise TimeoutError(f"{proc.name}: {url} did not answer 200 within {timeout_s:g} s")


async def run_command(
    args: Sequence[str], env: Mapping[str, str], timeout_s: float = 120.0
) -> tuple[int, str]:
    """Run a short command to completion (bounded); returns its exit code and output."""
    process = await asyncio.create_subprocess_exec(
        *args,
        env={**os.environ, **env},
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    return process.returncode or 0, out.decode(errors="replace")
