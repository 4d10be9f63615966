"""What the README promises, done the README's way: real processes on loopback."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.db import sqlite_url, wipe
from tests.support.ports import free_ports
from tests.support.processes import BIN, ROOT, start, stop
from tests.support.routing_files import shipped_routing_on

SAMPLE = {"sender_id": "user_123", "payload": {"message": "help me understand policy"}}


@pytest.fixture(params=["sqlite", "postgres"])
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, migrated: object
) -> Iterator[tuple[str, int, dict[str, str]]]:
    agents_port, router_port = free_ports(2)
    database_url = (
        sqlite_url(tmp_path / "router.db") if request.param == "sqlite" else migrated("postgres")  # type: ignore[operator]
    )
    env = {
        "API_KEY": "dev-key",
        "DATABASE_URL": database_url,
        "ROUTING_CONFIG": str(shipped_routing_on(agents_port, tmp_path)),
        "RETRY_BASE_MS": "1",
    }
    migrate = subprocess.run(
        [str(BIN / "router-service"), "migrate"],
        env={**env, "PATH": str(BIN)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr
    if request.param == "postgres":
        wipe(database_url)
    agents = start(
        [str(BIN / "router-service"), "demo-agents", "--port", str(agents_port)], env, agents_port
    )
    router = start(
        [str(BIN / "router-service"), "serve", "--port", str(router_port)], env, router_port
    )
    try:
        yield f"http://127.0.0.1:{router_port}", agents_port, env
    finally:
        stop(router)
        stop(agents)


def test_readme_sample_is_routed_to_the_policy_agent(
    stack: tuple[str, int, dict[str, str]],
) -> None:
    base_url, _, _ = stack
    response = httpx.post(f"{base_url}/route", json=SAMPLE, headers={"X-API-Key": "dev-key"})
    assert response.status_code == 200
    body = response.json()
    assert body["kind"] == "policy"
    assert body["status"] == "delivered"
    assert body["response"]["agent"] == "policy-agent"
    logs = httpx.get(
        f"{base_url}/logs", params={"sender_id": "user_123"}, headers={"X-API-Key": "dev-key"}
    ).json()
    assert [i["log_id"] for i in logs["items"]] == [body["log_id"]]


def test_dead_letter_then_replay_from_the_shell(stack: tuple[str, int, dict[str, str]]) -> None:
    base_url, agents_port, env = stack
    control = f"http://127.0.0.1:{agents_port}/_control"
    for agent in ("policy-agent", "general-agent"):
        httpx.put(f"{control}/{agent}", json={"mode": "fail", "status": 400}).raise_for_status()
    parked = httpx.post(f"{base_url}/route", json=SAMPLE, headers={"X-API-Key": "dev-key"})
    assert parked.status_code == 202
    for agent in ("policy-agent", "general-agent"):
        httpx.put(f"{control}/{agent}", json={"mode": "ok"}).raise_for_status()

    result = subprocess.run(
        [str(BIN / "router-service"), "replay-dlq", "--limit", "10"],
        env={**env, "PATH": str(BIN)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "replayed 1: 1 succeeded, 0 failed, 0 exhausted" in result.stdout
    log = httpx.get(
        f"{base_url}/logs/{parked.json()['log_id']}", headers={"X-API-Key": "dev-key"}
    ).json()
    assert log["status"] == "delivered"


def test_replay_dlq_with_ids_replays_exactly_those(stack: tuple[str, int, dict[str, str]]) -> None:
    base_url, agents_port, env = stack
    control = f"http://127.0.0.1:{agents_port}/_control"
    key = {"X-API-Key": "dev-key"}
    for agent in ("policy-agent", "general-agent"):
        httpx.put(f"{control}/{agent}", json={"mode": "fail", "status": 400}).raise_for_status()
    for index in range(2):
        body = {"sender_id": "user_123", "payload": {"message": "policy", "n": index}}
        assert httpx.post(f"{base_url}/route", json=body, headers=key).status_code == 202
    for agent in ("policy-agent", "general-agent"):
        httpx.put(f"{control}/{agent}", json={"mode": "ok"}).raise_for_status()
    pending = httpx.get(f"{base_url}/dlq", headers=key).json()["items"]
    chosen = pending[-1]["id"]

    result = subprocess.run(
        [str(BIN / "router-service"), "replay-dlq", "--id", str(chosen)],
        env={**env, "PATH": str(BIN)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "replayed 1: 1 succeeded, 0 failed, 0 exhausted, 0 deferred" in result.stdout
    left = [e["id"] for e in httpx.get(f"{base_url}/dlq", headers=key).json()["items"]]
    assert chosen not in left
    assert len(left) == len(pending) - 1


def test_make_dev_serves_the_sample_on_the_embedded_database(tmp_path: Path) -> None:
    agents_port, router_port = free_ports(2)
    env = {
        "PORT": str(router_port),
        "DEMO_AGENTS_PORT": str(agents_port),
        "ROUTING_CONFIG": str(shipped_routing_on(agents_port, tmp_path)),
        "DATABASE_URL": sqlite_url(tmp_path / "dev.db"),
    }
    dev = start(["make", "--no-print-directory", "dev"], env, router_port)
    try:
        response = httpx.post(
            f"http://127.0.0.1:{router_port}/route",
            json=SAMPLE,
            headers={"X-API-Key": "dev-key"},
            timeout=30,
        )
    finally:
        stop(dev)
    assert response.status_code == 200
    assert response.json()["kind"] == "policy"
    assert response.json()["status"] == "delivered"
    assert (tmp_path / "dev.db").exists()
