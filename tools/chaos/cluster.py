"""A throwaway Postgres cluster that chaos may stop, restart and starve: never the shared one.

``initdb`` refuses to run as root, so every server binary runs as the ``postgres`` user (through
``runuser`` when we are root) on a temporary directory owned by it. The cluster listens on
127.0.0.1 on a free port with trust authentication and is deleted on exit, whatever happened.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import asyncpg

from chaos.procs import free_port

PG_BIN = Path(os.environ.get("CHAOS_PG_BIN", "/usr/lib/postgresql/15/bin"))
_OWNER = "postgres"
_PG_CTL_TIMEOUT_S = 60
_ADMIN_TIMEOUT_S = 10.0


class ClusterError(RuntimeError):
    """The throwaway cluster could not be created, started or stopped."""


def _as_owner(args: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", _OWNER, "--", *args]
    return args


class ThrowawayCluster:
    """``with ThrowawayCluster() as pg:`` a running private cluster; ``pg.url(db)`` to use it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.running = False

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> ThrowawayCluster:
        try:
            self.create()
            self.start()
        except BaseException:
            self.destroy()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.destroy()

    def _run(self, args: list[str]) -> None:
        done = subprocess.run(
            _as_owner(args),
            capture_output=True,
            text=True,
            timeout=_PG_CTL_TIMEOUT_S,
            check=False,
            cwd=self.root,
        )
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise ClusterError(f"{Path(args[0]).name} failed: {' | '.join(detail)}")

    def create(self) -> None:
        if os.geteuid() == 0:
            owner = pwd.getpwnam(_OWNER)
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self._run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c max_connections=300 -c shared_buffers=64MB"
        )
        pg_ctl = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log)]
        self._run([*pg_ctl, "-o", options, "-w", "-t", str(_PG_CTL_TIMEOUT_S), "start"])
        self.running = True

    def stop_immediate(self) -> None:
        """A hard stop: no checkpoint, clients cut at once; the next start runs crash recovery."""
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        self.running = False

    def destroy(self) -> None:
        if self.running or (self.data / "postmaster.pid").exists():
            try:
                self.stop_immediate()
            except (ClusterError, subprocess.TimeoutExpired, OSError):
                _kill_postmaster(self.data)
        shutil.rmtree(self.root, ignore_errors=True)

    # ------------------------------------------------------------------ databases

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def execute(self, statement: str, *args: Any, database: str = "postgres") -> str:
        conn = await asyncpg.connect(self.url(database), timeout=_ADMIN_TIMEOUT_S)
        try:
            result: str = await conn.execute(statement, *args)
            return result
        finally:
            await conn.close()

    async def fetch(
        self, statement: str, *args: Any, database: str = "postgres"
    ) -> list[dict[str, Any]]:
        conn = await asyncpg.connect(self.url(database), timeout=_ADMIN_TIMEOUT_S)
        try:
            return [dict(r) for r in await conn.fetch(statement, *args)]
        finally:
            await conn.close()

    async def new_database(self, prefix: str) -> str:
        name = f"chaos_{prefix}_{secrets.token_hex(3)}".replace("-", "_")
        await self.execute(f'CREATE DATABASE "{name}"')
        return name

    async def terminate_router_backends(self, database: str) -> int:
        """Kill every router connection to ``database``; returns how many were killed."""
        rows = await self.fetch(
            "SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity "
            "WHERE application_name = 'router-service' AND datname = $1",
            database,
        )
        return sum(1 for r in rows if r["killed"])

    async def wait_ready(self, timeout_s: float) -> None:
        """Poll until the server accepts a query (bounded)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout_s
        while True:
            try:
                await self.execute("SELECT 1")
                return
            except (OSError, asyncpg.PostgresError, TimeoutError):
                if loop.time() > give_up:
                    raise
                await asyncio.sleep(0.1)


def _kill_postmaster(data: Path) -> None:
    """Last resort when pg_ctl cannot stop it: SIGKILL the postmaster named in its pid file."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        return
