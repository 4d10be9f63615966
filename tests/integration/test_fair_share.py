"""SENDER_MAX_IN_FLIGHT on a real router (both backends): the sender over its limit gets 429
``sender_over_limit`` with ``Retry-After``; another sender is untouched; the refusal is counted
without a sender label."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from router_service.devtools.demo_agents import RunningAgents
from tests.conftest import API_KEY, make_settings
from tests.support.metrics import metric
from tests.support.server import RouterServer


@pytest.fixture(scope="module")
def limited(database_url: str, routing_file: Path) -> Iterator[RouterServer]:
    settings = make_settings(
        database_url,
        routing_file,
        sender_max_in_flight=1,
        agent_timeout_ms=5000,
        request_deadline_ms=8000,
    )
    with RouterServer(settings) as server:
        yield server


def test_a_sender_over_its_limit_is_refused_and_others_are_not(
    limited: RouterServer, agents: RunningAgents
) -> None:
    agents.set("alpha", mode="slow", delay_ms=2000)
    headers = {"X-API-Key": API_KEY}
    with (
        httpx.Client(base_url=limited.base_url, headers=headers, timeout=30) as client,
        ThreadPoolExecutor(1) as pool,
    ):
        before = metric(client, "sender_refusals_total")
        first = pool.submit(
            client.post, "/route", json={"sender_id": "noisy", "payload": {"route": "one"}}
        )
        agents.wait_received("alpha", 1)  # the first signal is in flight now
        refused = client.post("/route", json={"sender_id": "noisy", "payload": {"route": "x"}})
        other = client.post("/route", json={"sender_id": "quiet", "payload": {"route": "race"}})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "sender_over_limit"
        assert refused.headers["Retry-After"] == "1"
        assert other.status_code == 200
        assert other.json()["response"]["agent"] == "beta"
        assert first.result().status_code == 200
        assert metric(client, "sender_refusals_total") == before + 1
        # Its slot is back once the first signal is answered.
        agents.set("alpha", mode="ok")
        again = client.post("/route", json={"sender_id": "noisy", "payload": {"route": "y"}})
        assert again.status_code == 200
        assert "sender_refusals_total" in client.get("/metrics").text
        assert 'sender_id="' not in client.get("/metrics").text


def test_a_sender_fanning_out_holds_only_its_share_of_the_agent_slots(
    database_url: str, routing_file: Path, agents: RunningAgents
) -> None:
    """One signal to three agents (``aggregate``) takes three of GLOBAL_CONCURRENCY's slots
    while SENDER_MAX_IN_FLIGHT=1 counts one signal: here it would take both slots, and a quiet
    sender's signal would wait for the noisy sender's agents to answer. SENDER_MAX_AGENT_CALLS
    caps the slots."""
    settings = make_settings(
        database_url,
        routing_file,
        sender_max_in_flight=1,
        sender_max_agent_calls=1,
        global_concurrency=2,
        agent_timeout_ms=5000,
        request_deadline_ms=15000,
    )
    server = RouterServer(settings).start()
    names = ("alpha", "beta", "gamma")
    try:
        for name in names:
            agents.set(name, mode="slow", delay_ms=3000)
        seen = {name: len(agents.received(name)) for name in names}
        headers = {"X-API-Key": API_KEY}
        with (
            httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client,
            ThreadPoolExecutor(2) as pool,
        ):
            fanout = {"sender_id": "noisy", "payload": {"route": "fanout"}}
            noisy = pool.submit(client.post, "/route", json=fanout)
            agents.wait_received("alpha", seen["alpha"] + 1)  # its first attempt holds a slot
            one = {"sender_id": "quiet", "payload": {"route": "one"}}
            quiet = pool.submit(client.post, "/route", json=one)
            # The other slot is the quiet sender's at once, not after the noisy one's 3 s.
            agents.wait_received("alpha", seen["alpha"] + 2, timeout_s=2.0)
            assert quiet.result().status_code == 200
            answer = noisy.result()
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == "delivered"  # its agents in turn, in its deadline
        for name in ("beta", "gamma"):
            assert len(agents.received(name)) == seen[name] + 1
    finally:
        for name in names:
            agents.set(name, mode="ok")
        server.stop()
