"""What a run sets up around its targets: its own Postgres database, a snapshot of the source,
and the description of the machine. Shared by the comparison and the soak."""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import asyncpg

from bench.targets import ROOT, VENV_BIN, router_environment
from bench.wake_cost import wake_cost_text

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


# --------------------------------------------------------------------------- databases


async def server_statement(url: str, statement: str) -> str:
    """One statement on its own connection: a ``SHOW`` or ``SELECT``'s single value, else the
    command's status."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        return str(await conn.fetchval(statement) if statement.startswith(("SHOW", "SELECT")) else
                   await conn.execute(statement))  # fmt: skip
    finally:
        await conn.close()


def database_url(admin_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``admin_url``."""
    return f"{admin_url.rsplit('/', 1)[0]}/{name}"


def migrate(database_url: str, routing_file: Path, workdir: Path) -> str | None:
    """``router-service migrate``; None on success, else the reason."""
    done = subprocess.run(
        [str(VENV_BIN / "router-service"), "migrate"],
        env=router_environment(database_url, routing_file, "WARNING"),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode == 0:
        return None
    lines = (done.stderr or done.stdout).strip().splitlines()
    return lines[-1] if lines else f"migrate exited with {done.returncode}"


def create_database(admin_url: str, name: str) -> None:
    asyncio.run(server_statement(admin_url, f'CREATE DATABASE "{name}"'))


def drop_database(admin_url: str, name: str) -> None:
    try:
        asyncio.run(server_statement(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"bench: could not drop database {name}: {exc}", file=sys.stderr)


# --------------------------------------------------------------------------- machine


def _first_line(args: list[str]) -> str:
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "not found"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0] if lines else "?"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# The server settings a reader needs to read the log's figures (no vacuum runs when autovacuum
# is off; the commit's cost follows fsync and synchronous_commit; checkpoints follow the WAL's).
PG_SETTINGS = (
    "SELECT string_agg(name || ' = ' || current_setting(name), ', ' ORDER BY name) "
    "FROM pg_settings WHERE name IN ('autovacuum', 'checkpoint_timeout', 'fsync', "
    "'max_wal_size', 'shared_buffers', 'synchronous_commit')"
)


def machine(postgres_url: str, peers: bool) -> list[tuple[str, str]]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(x.split(":", 1)[1].strip() for x in cpuinfo.splitlines() if "model name" in x)
    meminfo = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    osname = next(
        (x.split("=", 1)[1].strip('"') for x in Path("/etc/os-release").read_text().splitlines()
         if x.startswith("PRETTY_NAME=")), "?",
    )  # fmt: skip
    try:
        pg = asyncio.run(server_statement(postgres_url, "SHOW server_version"))
        settings = asyncio.run(server_statement(postgres_url, PG_SETTINGS))
    except (OSError, asyncpg.PostgresError) as exc:
        pg = settings = f"unavailable ({exc})"
    rows = [
        ("CPUs (nproc)", str(os.cpu_count())),
        ("CPU model", model),
        ("memory", f"{int(meminfo) / 1024 / 1024:.1f} GiB"),
        ("kernel", platform.release()),
        ("OS", osname),
        ("Python", platform.python_version()),
        ("CPU speed, one core", cpu_speed()),
        ("a message to another process", wake_cost_text()),
        ("nginx", _first_line(["nginx", "-v"])),
        ("wrk", _first_line(["wrk", "-v"]).split(" Copyright")[0]),
        ("Postgres", pg),
        ("Postgres settings", settings),
        ("SQLite", sqlite3.sqlite_version),
        ("load average at start", loadavg()),
    ]
    if peers:
        rows.append(("node", _first_line(["node", "--version"])))
    return rows


def cpu_speed(additions: int = 5_000_000) -> str:
    """A fixed loop of Python additions, best of two, per 10 million: the figure to compare
    machines by (these shared machines differed by close to three times between sessions, and a
    run's absolute figures move with it)."""
    best = math.inf
    for _ in range(2):
        started = time.perf_counter()
        total = 0
        for i in range(additions):
            total += i
        best = min(best, time.perf_counter() - started)
    return (
        f"{best * 10_000_000 / additions:.2f} s per 10 million Python additions (lower is faster)"
    )


def pinned_text(text: str) -> str:
    return text if shutil.which("taskset") else "not pinned (no taskset)"


# --------------------------------------------------------------------------- source


def snapshot_source(workdir: Path) -> str:
    """Copy router_service/ and run every router from the copy: the code is edited concurrently,
    and one run must measure one version. Returns the commit and a digest of the copy."""
    target = workdir / "src" / "router_service"
    shutil.copytree(ROOT / "router_service", target, ignore=shutil.ignore_patterns("__pycache__"))
    digest = hashlib.sha256()
    for path in sorted(target.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(target)).encode() + b"\0" + path.read_bytes())
    # PYTHONPATH wins over the editable install wherever the working directory holds no copy;
    # tools/ keeps the benchmark's own packages importable beside the copy.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(target.parent), str(ROOT / "tools")])
    return f"commit {_commit()}, working tree sha256 {digest.hexdigest()[:12]}"


def _commit() -> str:
    """HEAD's commit, read from .git (no git command runs)."""
    git = ROOT / ".git"
    try:
        if git.is_file():  # a worktree: .git names the real git directory
            git = Path(git.read_text().split(":", 1)[1].strip())
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head[5:]
        common = git / "commondir"
        refs = (git / common.read_text().strip()).resolve() if common.exists() else git
        if (refs / ref).exists():
            return (refs / ref).read_text().strip()[:12]
        for line in (refs / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line[:12]
    except OSError:
        pass
    return "unknown"
