"""Circuit breaking and the retry budget, against a real failing agent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router_service.devtools.demo_agents import RunningAgents
from tests.conftest import API_KEY, make_settings
from tests.integration.test_modes_and_retries import metric
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
