"""``serve`` as a process, at the level of its connections: its soft limit on open files is
raised to the hard limit (every client connection is a file, and a default soft limit of 1,024
would refuse a burst of clients long before the machine's limit), and what uvicorn says of a
client's bytes that are not HTTP is one of the router's JSON log lines, not uvicorn's text."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.db import sqlite_url
from tests.support.polling import wait_for
from tests.support.ports import free_ports
from tests.support.processes import BIN, start, stop


@dataclass(frozen=True)
class Served:
    pid: int
    port: int
    stdout: Path
    stderr: Path
    hard_limit: int


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp_path = tmp_path_factory.mktemp("serve")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(256, hard)

    def lower_the_soft_limit() -> None:  # runs in the child before it becomes the router
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))

    (port,) = free_ports(1)
    env = {"API_KEY": "k", "DATABASE_URL": sqlite_url(tmp_path / "r.db"), "LOG_LEVEL": "INFO"}
    migrate = [str(BIN / "router-service"), "migrate"]
    subprocess.run(migrate, env={**os.environ, **env}, check=True, capture_output=True, timeout=120)
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        router = start(
            [str(BIN / "router-service"), "serve", "--port", str(port)],
            env,
            port,
            stdout=out,
            stderr=err,
            preexec=lower_the_soft_limit,
        )
        try:
            wait_for(lambda: "ready on" in stderr.read_text(), 30, what="the ready line")
            yield Served(router.pid, port, stdout, stderr, hard)
        finally:
            stop(router)


def _open_files(pid: int) -> tuple[int, int]:
    line = next(
        line
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
        if line.startswith("Max open files")
    )
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


def test_serve_raises_its_soft_limit_on_open_files_to_the_hard_limit(served: Served) -> None:
    assert _open_files(served.pid) == (served.hard_limit, served.hard_limit)


def test_what_uvicorn_logs_of_bytes_that_are_not_http_is_a_json_line(served: Served) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "invalid_http"

    def uvicorn_lines() -> list[dict[str, object]]:
        lines = [json.loads(line) for line in served.stdout.read_text().splitlines()]
        return [line for line in lines if line.get("logger") == "uvicorn.error"]

    wait_for(uvicorn_lines, 10, what="uvicorn's line on the router's stdout")
    (line,) = uvicorn_lines()
    assert line["event"] == "Invalid HTTP request received."
    assert line["level"] == "warning"
    assert "ts" in line
    # stderr holds the ready line only: nothing of uvicorn's in its own text format.
    written = [line for line in served.stderr.read_text().splitlines() if line.strip()]
    assert len(written) == 1
    assert "ready on" in written[0]
