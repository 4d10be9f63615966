"""Circuit breaking and the retry budget, against a real failing agent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router_service.devtools.demo_agents import RunningAgents
from tests.conftest import API_KEY, make_settings
from tests.support.db import wipe
from tests.support.metrics import metric
from tests.support.polling import wait_for
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

    def delivered() -> httpx.Response | None:
        answer = guarded.post("/route", json={"sender_id": "b", "payload": {"route": "one"}})
        return answer if answer.status_code == 200 else None

    # Bounded by time, not by a count of requests: a fast machine sent 200 within the 0.3 s
    # cool-down, so the probe it waited for had not yet been allowed.
    wait_for(delivered, timeout_s=10, interval_s=0.01, what="a probe through the cool-down")
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


@pytest.fixture
def cooling(database_url: str, routing_file: Path) -> Iterator[httpx.Client]:
    """A cool-down long enough that a loaded machine cannot outrun it between two requests."""
    settings = make_settings(
        database_url, routing_file, breaker_failures=3, breaker_cooldown_s=3, retry_budget_min=2
    )
    server = RouterServer(settings).start()
    try:
        with httpx.Client(base_url=server.base_url, headers={"X-API-Key": API_KEY}) as client:
            yield client
    finally:
        server.stop()


def test_a_replay_while_the_circuit_is_open_is_deferred_not_spent(
    cooling: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    guarded = cooling
    wipe(database_url)  # the dead letters of the tests before
    agents.set("alpha", mode="fail", status=503)
    parked = guarded.post("/route", json={"sender_id": "d", "payload": {"route": "one"}})
    assert parked.status_code == 202
    assert guarded.get("/health").json()["checks"]["agents"]["circuits"]["alpha"] == "open"
    calls = len(agents.received("alpha"))

    summary = guarded.post("/dlq/replay", json={"limit": 10}).json()
    reasons = summary.pop("deferred_reasons")
    assert summary == {"replayed": 1, "succeeded": 0, "failed": 0, "exhausted": 0, "deferred": 1}
    [reason] = reasons
    assert (reason["agent"], reason["reason"], reason["entries"]) == ("alpha", "circuit_open", 1)
    assert 0 < reason["retry_in_s"] <= 3
    assert "circuit of agent 'alpha' is open, next probe in" in reason["message"]
    assert len(agents.received("alpha")) == calls  # the open circuit was respected
    [entry] = guarded.get("/dlq").json()["items"]
    assert (entry["status"], entry["replay_count"]) == ("pending", 0)  # nothing spent
    assert metric(guarded, "dlq_replays_total") == 1  # counted, as outcome "deferred"

    agents.set("alpha", mode="ok")
    wait_for(  # bounded: the cool-down is 3 s, then a probe goes out
        lambda: guarded.post("/dlq/replay", json={"limit": 10}).json()["succeeded"] == 1,
        timeout_s=15,
        what="a replay after the cool-down",
    )
    [done] = guarded.get("/dlq", params={"status": "replayed"}).json()["items"]
    assert done["replay_count"] == 1


@pytest.fixture
def long_cooldown(database_url: str, routing_file: Path) -> Iterator[httpx.Client]:
    settings = make_settings(database_url, routing_file, breaker_failures=1, breaker_cooldown_s=600)
    server = RouterServer(settings).start()
    try:
        with httpx.Client(base_url=server.base_url, headers={"X-API-Key": API_KEY}) as client:
            yield client
    finally:
        server.stop()


def test_a_replay_of_named_ids_goes_out_now_as_the_probe_of_an_open_circuit(
    long_cooldown: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    wipe(database_url)
    agents.set("alpha", mode="fail", status=503)
    for index in range(2):
        parked = long_cooldown.post(
            "/route", json={"sender_id": "p", "payload": {"route": "one", "i": index}}
        )
        assert parked.status_code == 202
    circuits = long_cooldown.get("/health").json()["checks"]["agents"]["circuits"]
    assert circuits["alpha"] == "open"
    first, second = long_cooldown.get("/dlq").json()["items"]

    # Bulk replay respects the open circuit (a 600 s cool-down): deferred, with the reason.
    bulk = long_cooldown.post("/dlq/replay", json={"limit": 10}).json()
    assert (bulk["deferred"], bulk["succeeded"]) == (2, 0)
    [reason] = bulk["deferred_reasons"]
    assert reason["entries"] == 2
    assert 590 <= reason["retry_in_s"] <= 600
    assert "next probe in 600 s" in reason["message"] or "next probe in 599 s" in reason["message"]

    # The operator fixed the agent and names an entry: it goes out now, as the probe.
    agents.set("alpha", mode="ok")
    calls = len(agents.received("alpha"))
    named = long_cooldown.post("/dlq/replay", json={"ids": [first["id"]]}).json()
    assert (named["succeeded"], named["deferred"], named["deferred_reasons"]) == (1, 0, [])
    assert len(agents.received("alpha")) == calls + 1
    # The probe succeeded: the circuit is closed and bulk replays flow again.
    circuits = long_cooldown.get("/health").json()["checks"]["agents"]["circuits"]
    assert circuits["alpha"] == "closed"
    assert long_cooldown.post("/dlq/replay", json={"limit": 10}).json()["succeeded"] == 1
    assert [
        e["id"] for e in long_cooldown.get("/dlq", params={"status": "replayed"}).json()["items"]
    ] == [first["id"], second["id"]]


def test_a_named_replay_that_fails_as_the_probe_reopens_the_circuit(
    long_cooldown: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    wipe(database_url)
    agents.set("alpha", mode="fail", status=503)
    long_cooldown.post("/route", json={"sender_id": "p", "payload": {"route": "one"}})
    [entry] = long_cooldown.get("/dlq").json()["items"]
    calls = len(agents.received("alpha"))
    named = long_cooldown.post("/dlq/replay", json={"ids": [entry["id"]]}).json()
    assert (named["failed"], named["deferred"]) == (1, 0)
    # One probe, no retries through the re-opened circuit.
    assert len(agents.received("alpha")) == calls + 1
    circuits = long_cooldown.get("/health").json()["checks"]["agents"]["circuits"]
    assert circuits["alpha"] == "open"
