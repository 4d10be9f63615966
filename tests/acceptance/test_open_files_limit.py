"""``serve`` raises its soft limit on open files to the hard limit: every client connection is a
file, and a default soft limit of 1,024 would refuse a burst of connections long before the
machine's limit."""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

from tests.support.db import sqlite_url
from tests.support.ports import free_ports
from tests.support.processes import BIN, start, stop


def _open_files(pid: int) -> tuple[int, int]:
    line = next(
        line
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
        if line.startswith("Max open files")
    )
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def test_serve_raises_its_soft_limit_on_open_files_to_the_hard_limit(tmp_path: Path) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(256, hard)

    def lower_the_soft_limit() -> None:  # runs in the child before it becomes the router
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))

    (port,) = free_ports(1)
    env = {"API_KEY": "k", "DATABASE_URL": sqlite_url(tmp_path / "r.db")}
    migrate = [str(BIN / "router-service"), "migrate"]
    subprocess.run(migrate, env={**os.environ, **env}, check=True, capture_output=True, timeout=120)
    router = start(
        [str(BIN / "router-service"), "serve", "--port", str(port)],
        env,
        port,
        preexec=lower_the_soft_limit,
    )
    try:
        assert _open_files(router.pid) == (hard, hard)
    finally:
        stop(router)
