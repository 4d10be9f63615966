"""Circuit breaking and the retry budget, against a real failing agent."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router_service.devtools.demo_agents import RunningAgents
from tests.conftest import API_KEY, make_settings
from tests.integration.test_modes_and_retries import metric
from tests.support.db import wipe
from tests.support.server import RouterServer


@pytest.fixture
def guarded(database_url: str, routing_file: Path) -> Iterator[httpx.Client]:
    settings = make_settings(
        database_url,
        routing_file,
        breaker_failures=3,
        breaker_cooldown_s=0.3,
        retry_budget_min=2,
        retry_budget_ratio=0.0,
    )
    server = RouterServer(settings).start()
    try:
        with httpx.Client(base_url=server.base_url, headers={"X-API-Key": API_KEY}) as client:
            yield client
    finally:
        server.stop()


def test_breaker_opens_fails_fast_then_probes_and_closes(
    guarded: httpx.Client, agents: RunningAgents
) -> None:
    agents.set("alpha", mode="fail", status=400, script=[{"status": 503}] * 3)
    opened = guarded.post("/route", json={"sender_id": "b", "payload": {"route": "one"}})
    # Three 503s in a row open the circuit (retries included).
    assert opened.json()["results"][0]["attempts"] == 3
    assert guarded.get("/health").json()["checks"]["agents"]["circuits"]["alpha"] == "open"
    calls = len(agents.received("alpha"))

    fast = guarded.post("/route", json={"sender_id": "b", "payload": {"route": "one"}})
    assert fast.status_code == 202
    assert "circuit open" in fast.json()["results"][0]["error"]
    assert len(agents.received("alpha")) == calls  # not called while open
    assert metric(guarded, "agent_circuit_rejections_total") == 1
    assert metric(guarded, "agent_circuit_state") == 2

    agents.set("alpha", mode="ok")
    probe = None
    for _ in range(200):  # bounded: the cool-down is 0.3 s
        probe = guarded.post("/route", json={"sender_id": "b", "payload": {"route": "one"}})
        if probe.status_code == 200:
            break
    assert probe is not None
    assert probe.status_code == 200
    assert guarded.get("/health").json()["checks"]["agents"]["circuits"]["alpha"] == "closed"


def test_retry_budget_caps_retries_during_an_outage(
    database_url: str, routing_file: Path, agents: RunningAgents
) -> None:
    settings = make_settings(
        database_url,
        routing_file,
        breaker_failures=1000,
        retry_budget_min=2,
        retry_budget_ratio=0.0,
        retry_budget_window_s=60,
    )
    server = RouterServer(settings).start()
    try:
        with httpx.Client(base_url=server.base_url, headers={"X-API-Key": API_KEY}) as client:
            agents.set("alpha", mode="fail", status=503)
            for _ in range(3):
                client.post("/route", json={"sender_id": "b", "payload": {"route": "one"}})
            # Without the budget: 3 signals x 2 retries = 6. The budget allows 2 in the window.
            assert metric(client, "retry_attempts_total") == 2
            assert len(agents.received("alpha")) == 5
    finally:
        server.stop()


def test_a_replay_while_the_circuit_is_open_is_deferred_not_spent(
    guarded: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    wipe(database_url)  # the dead letters of the tests before
    agents.set("alpha", mode="fail", status=503)
    parked = guarded.post("/route", json={"sender_id": "d", "payload": {"route": "one"}})
    assert parked.status_code == 202
    assert guarded.get("/health").json()["checks"]["agents"]["circuits"]["alpha"] == "open"
    calls = len(agents.received("alpha"))

    summary = guarded.post("/dlq/replay", json={"limit": 10}).json()
    assert summary == {"replayed": 1, "succeeded": 0, "failed": 0, "exhausted": 0, "deferred": 1}
    assert len(agents.received("alpha")) == calls  # the open circuit was respected
    [entry] = guarded.get("/dlq").json()["items"]
    assert (entry["status"], entry["replay_count"]) == ("pending", 0)  # nothing spent
    assert metric(guarded, "dlq_replays_total") == 1  # counted, as outcome "deferred"

    agents.set("alpha", mode="ok")
    give_up = time.monotonic() + 10  # bounded: the cool-down is 0.3 s, then a probe goes out
    while time.monotonic() < give_up:
        if guarded.post("/dlq/replay", json={"limit": 10}).json()["succeeded"] == 1:
            break
    [done] = guarded.get("/dlq", params={"status": "replayed"}).json()["items"]
    assert done["replay_count"] == 1
