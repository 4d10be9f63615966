"""The operator's day, end to end with real processes on both backends: route real traffic,
break an agent, backtest a candidate file against the log, shadow it, hot-reload it, dry-run a
replay, run it as a job at a rate, cancel it halfway, resume it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.support import polling
from tests.support.db import sqlite_url, wipe
from tests.support.ports import free_ports
from tests.support.processes import BIN, ROOT, start, stop
from tests.support.routing_files import shipped_routing_on

KEY = {"X-API-Key": "ops-key"}
FEEDBACK = 12
T = TypeVar("T")


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "router-service"), *args],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def wait_for(check: Callable[[], T | None]) -> T:
    """Real processes polled over HTTP: up to 30 s, every 0.1 s."""
    return polling.wait_for(check, 30, interval_s=0.1)


def candidate_of(config: Path) -> str:
    """The shipped file where feature requests become support (its tests updated to match)."""
    text = config.read_text()
    text = text.replace(
        "  - id: feedback-keywords\n    kind: feedback",
        "  - id: feedback-keywords\n    kind: support",
    )
    return text.replace(
        '    payload: {message: "feature request: dark mode"}\n    rule: feedback-keywords',
        '    payload: {message: "feature request: dark mode"}\n    rule: feedback-keywords\n'
        "    kind: support",
    )


class Stack:
    def __init__(self, tmp_path: Path, database_url: str) -> None:
        self.agents_port, self.port = free_ports(2)
        self.config = shipped_routing_on(self.agents_port, tmp_path)
        self.candidate = tmp_path / "candidate.yaml"
        self.candidate.write_text(candidate_of(self.config))
        self.log = tmp_path / "router.log"
        self.env = {
            "API_KEYS": "ops:ops-key",
            "DATABASE_URL": database_url,
            "ROUTING_CONFIG": str(self.config),
            "RETRY_BASE_MS": "1",
            "BREAKER_COOLDOWN_S": "0.5",
            "REPLAY_JOB_POLL_S": "0.3",
            "LOG_LEVEL": "INFO",
        }
        self.agents = start(
            [str(BIN / "router-service"), "demo-agents", "--port", str(self.agents_port)],
            self.env,
            self.agents_port,
        )
        self.router: subprocess.Popen[bytes] | None = None
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", headers=KEY, timeout=30)

    def serve(self, **extra: str) -> None:
        if self.router is not None:
            stop(self.router)
        with self.log.open("ab") as out:
            self.router = start(
                [str(BIN / "router-service"), "serve", "--port", str(self.port)],
                {**self.env, **extra},
                self.port,
                stdout=out,
            )

    def agent(self, name: str, **behaviour: Any) -> None:
        httpx.put(f"http://127.0.0.1:{self.agents_port}/_control/{name}", json=behaviour)

    def route(self, message: str, index: int) -> dict[str, Any]:
        body = {"sender_id": "e2e", "payload": {"message": message, "i": index}}
        return dict(self.http.post("/route", json=body).json())

    def job(self, job_id: int) -> dict[str, Any]:
        return dict(self.http.get(f"/dlq/replays/{job_id}").json())

    def events(self, name: str) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines()
        return [e for e in map(_json, lines) if e.get("event") == name]

    def close(self) -> None:
        self.http.close()
        if self.router is not None:
            stop(self.router)
        stop(self.agents)


def _json(line: str) -> dict[str, Any]:
    try:
        found = json.loads(line)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


@pytest.fixture(params=["sqlite", "postgres"])
def stack(request: pytest.FixtureRequest, tmp_path: Path, migrated: Any) -> Iterator[Stack]:
    url = sqlite_url(tmp_path / "router.db") if request.param == "sqlite" else migrated("postgres")
    assert cli("migrate", env={"DATABASE_URL": url}).returncode == 0
    if request.param == "postgres":
        wipe(url)
    running = Stack(tmp_path, url)
    try:
        yield running
    finally:
        running.close()


def test_route_break_backtest_shadow_reload_and_replay_as_a_job(stack: Stack) -> None:
    s = stack
    s.serve()
    # 1. Real traffic.
    assert s.route("help me understand policy", 0)["kind"] == "policy"
    # 2. The feedback agent breaks: feature requests are dead-lettered.
    s.agent("feedback-agent", mode="fail", status=500)
    parked = [s.route(f"feature request number {i}", i) for i in range(FEEDBACK)]
    assert {p["status"] for p in parked} == {"dead_lettered"}
    # 3. Backtest the candidate against the log: the feature requests would move.
    report = cli("backtest", str(s.candidate), "--since", "1h", "--json", env=s.env)
    assert report.returncode == 0, report.stderr
    backtest = json.loads(report.stdout)
    assert (backtest["total"], backtest["changed"]) == (FEEDBACK + 1, FEEDBACK)
    assert backtest["changes"][0]["new_kind"] == "support"
    check = cli("check-config", str(s.candidate), env=s.env)
    assert check.returncode == 0, check.stdout + check.stderr
    # 4. Shadow it on live traffic: counted, not sent.
    s.serve(SHADOW_ROUTING_CONFIG=str(s.candidate))
    assert s.route("another feature request", 99)["kind"] == "feedback"
    metrics = s.http.get("/metrics").text
    assert 'shadow_route_diff_total{active_kind="feedback",shadow_kind="support"} 1.0' in metrics
    # 5. Hot-reload it.
    before = s.http.get("/health").json()["routing"]["version"]
    s.config.write_text(s.candidate.read_text())
    reloaded = s.http.post("/admin/reload").json()
    assert reloaded["outcome"] == "reloaded"
    assert reloaded["previous_version"] == before
    assert s.route("one more feature request", 100)["kind"] == "support"
    # The agent is back; its circuit (opened by the failures) closes on the first probe.
    s.agent("feedback-agent", mode="ok")
    probe = {"sender_id": "e2e", "payload": {"type": "feedback"}}
    wait_for(lambda: s.http.post("/route", json=probe).json()["status"] == "delivered")
    # 6. Dry-run the replay of what is still parked.
    preview = s.http.post("/dlq/replay", json={"kind": "feedback", "dry_run": True}).json()
    total = preview["count"]
    assert total >= FEEDBACK  # the shadow stage parked one more
    assert preview["agents"]["feedback-agent"]["entries"] == total
    # 7. Run it as a job at a rate; 8. cancel it halfway.
    body = {"kind": "feedback", "snapshot": preview["snapshot"], "rate": 4}
    job_id = s.http.post("/dlq/replay", json=body).json()["job"]["id"]
    wait_for(lambda: s.job(job_id)["counts"]["replayed"] >= 3)
    assert s.http.post(f"/dlq/replays/{job_id}/cancel").status_code == 200
    halfway = wait_for(lambda: (j := s.job(job_id))["state"] == "cancelled" and j)
    assert 3 <= halfway["counts"]["replayed"] < total
    # 9. Resume it, in another process: the server restarts between cancel and resume.
    s.serve()
    assert s.http.post(f"/dlq/replays/{job_id}/resume").status_code == 202
    done = wait_for(lambda: (j := s.job(job_id))["state"] == "done" and j)
    assert done["counts"]["succeeded"] == total
    assert (
        s.http.post("/dlq/replay", json={"kind": "feedback", "dry_run": True}).json()["count"] == 0
    )
    history = s.http.get(f"/logs/{parked[-1]['log_id']}").json()["delivery_history"]
    assert history[-1]["job_id"] == job_id
    assert history[-1]["outcome"] == "succeeded"
    # Audit: every replay and reload names the key, never the key itself.
    assert s.events("routing.reload")[-1]["by"] == "ops"
    assert {e["by"] for e in s.events("replay.started")} == {"ops"}
    assert "ops-key" not in s.log.read_text()


def test_a_job_whose_server_is_killed_is_finished_by_another(stack: Stack) -> None:
    s = stack
    s.serve(REPLAY_JOB_LEASE_S="1")
    s.agent("feedback-agent", mode="fail", status=400)
    for i in range(6):
        s.route(f"feature request {i}", i)
    s.agent("feedback-agent", mode="ok")
    job_id = s.http.post("/dlq/replay", json={"kind": "feedback", "rate": 2}).json()["job"]["id"]
    wait_for(lambda: s.job(job_id)["counts"]["replayed"] >= 1)
    assert s.router is not None
    os.killpg(s.router.pid, signal.SIGKILL)
    s.router.wait(10)
    s.router = None
    s.serve(REPLAY_JOB_LEASE_S="1")
    done = wait_for(lambda: (j := s.job(job_id))["state"] == "done" and j)
    # The entry the killed server had in hand stays claimed by it until that claim expires:
    # the new runner skips it, and it stays pending for the next replay.
    assert done["counts"]["succeeded"] >= 5
    assert (
        s.http.post("/dlq/replay", json={"kind": "feedback", "dry_run": True}).json()["count"] <= 1
    )
    assert s.events("replay.taken_over")[-1]["job_id"] == job_id
