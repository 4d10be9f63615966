"""SIGHUP and POST /admin/reload against real `serve` processes: one worker, and every worker
of `serve --workers 2` (the supervisor forwards SIGHUP instead of restarting workers)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.support.db import sqlite_url
from tests.support.polling import wait_for
from tests.support.ports import free_ports
from tests.support.processes import BIN, migrate, start, stop
from tests.support.routing_files import shipped_routing_on


def reloads(log: Path, version: str) -> set[int]:
    """The worker pids that logged a reload making ``version`` active."""
    pids = set()
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"routing.reload"' in line:
            event = json.loads(line)
            if event["version"] == version and event["outcome"] in ("reloaded", "unchanged"):
                pids.add(event["pid"])
    return pids


def wait_for_reloads(log: Path, version: str, workers: int) -> set[int]:
    def all_reloaded() -> set[int] | None:
        pids = reloads(log, version)
        return pids if len(pids) >= workers else None

    return wait_for(
        all_reloaded,
        30,
        interval_s=0.1,
        what=f"{workers} workers to reload {version}",
        detail=lambda: f"only {reloads(log, version)} reloaded {version}: {log.read_text()}",
    )


def wait_for_workers(log: Path, workers: int) -> None:
    """Every worker serves and handles SIGHUP (one that is still starting would be restarted by
    the signal, not reloaded)."""

    def ready() -> set[int] | None:
        pids = {
            json.loads(line)["pid"]
            for line in log.read_text().splitlines()
            if line.startswith("{") and '"startup.ready"' in line
        }
        return pids if len(pids) >= workers else None

    wait_for(ready, 60, interval_s=0.1, what=f"{workers} workers to be ready")


def edit_route(config: Path, kind: str, agent: str) -> str:
    """Point ``kind`` at ``agent`` and drop the file's tests (they pin the old routes); return
    the new version."""
    text = config.read_text().split("\ntests:")[0]
    lines = [
        f"  {kind}: {{agents: [{agent}]}}" if line.startswith(f"  {kind}: ") else line
        for line in text.splitlines()
    ]
    data = ("\n".join(lines) + "\n").encode()
    config.write_bytes(data)
    return hashlib.sha256(data).hexdigest()[:12]


def serve_command(port: int) -> list[str]:
    return [str(BIN / "router-service"), "serve", "--port", str(port)]


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_and_the_admin_endpoint_reload_every_worker(tmp_path: Path, workers: int) -> None:
    agents_port, router_port = free_ports(2)
    config = shipped_routing_on(agents_port, tmp_path)
    env = {
        "API_KEY": "k",
        "DATABASE_URL": sqlite_url(tmp_path / "r.db"),
        "ROUTING_CONFIG": str(config),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "LOG_LEVEL": "INFO",
    }
    migrate(env)
    log = tmp_path / "router.log"
    with log.open("wb") as out:
        router = start(
            [
                str(BIN / "router-service"),
                "serve",
                "--port",
                str(router_port),
                "--workers",
                str(workers),
            ],
            env,
            router_port,
            stdout=out,
        )
        try:
            wait_for_workers(log, workers)
            by_signal = edit_route(config, "feedback", "general-agent")
            os.kill(router.pid, signal.SIGHUP)
            assert len(wait_for_reloads(log, by_signal, workers)) == workers
            assert router.poll() is None  # reloaded, not restarted
            by_api = edit_route(config, "feedback", "support-agent")
            answer = httpx.post(
                f"http://127.0.0.1:{router_port}/admin/reload", headers={"X-API-Key": "k"}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == by_api
            assert len(wait_for_reloads(log, by_api, workers)) == workers
            for _ in range(4 * workers):
                health = httpx.get(
                    f"http://127.0.0.1:{router_port}/health", headers={"Connection": "close"}
                )
                assert health.json()["routing"]["version"] == by_api
        finally:
            stop(router)
