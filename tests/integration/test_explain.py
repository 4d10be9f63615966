"""POST /route/explain on both backends: the trace, circuits, nothing sent or logged; and the
routing version every log row records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router_service.devtools.demo_agents import RunningAgents
from tests.conftest import API_KEY, make_settings
from tests.support.db import query
from tests.support.server import RouterServer


@pytest.fixture(scope="module")
def router(database_url: str, routing_file: Path) -> Iterator[RouterServer]:
    # A breaker that opens after two failed attempts, so a test can open a circuit.
    settings = make_settings(database_url, routing_file, breaker_failures=2, retry_max_attempts=1)
    with RouterServer(settings) as server:
        yield server


def test_explain_traces_every_rule_and_sends_nothing(
    client: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    body = {"sender_id": "ex", "payload": {"route": "chain"}}
    answer = client.post("/route/explain", json=body)
    assert answer.status_code == 200, answer.text
    trace = answer.json()
    assert (trace["kind"], trace["rule"]) == ("chain", "route-chain")
    assert [r["id"] for r in trace["rules"]] == [
        "route-one",
        "route-race",
        "route-chain",
        "route-fanout",
        "route-deadend",
    ]
    assert trace["rules"][0]["condition"]["found"] == "chain"
    assert trace["rules"][0]["why"] == "equals 'one' at route: found 'chain', no match"
    assert trace["plan"]["mode"] == "fallback"
    assert [a["name"] for a in trace["plan"]["agents"]] == ["alpha", "beta", "gamma"]
    assert all(a["circuit"] == "closed" for a in trace["plan"]["agents"])
    health = client.get("/health").json()
    assert trace["routing_version"] == health["routing"]["version"]
    assert agents.received("alpha") == []
    assert query(database_url, "SELECT count(*) AS n FROM signals")[0]["n"] == 0
    assert client.get("/logs").json()["items"] == []


def test_explain_shows_an_open_circuit(client: httpx.Client, agents: RunningAgents) -> None:
    agents.set("gamma", mode="fail", status=503)
    for index in range(2):
        client.post("/route", json={"sender_id": "ex", "payload": {"route": "fanout", "i": index}})
    trace = client.post("/route/explain", json={"sender_id": "ex", "payload": {"route": "fanout"}})
    circuits = {a["name"]: a["circuit_open"] for a in trace.json()["plan"]["agents"]}
    assert circuits == {"alpha": False, "beta": False, "gamma": True}


def test_explain_needs_the_route_scope_and_a_valid_body(router: RouterServer) -> None:
    with httpx.Client(base_url=router.base_url) as anonymous:
        assert anonymous.post("/route/explain", json={}).status_code == 401
    with httpx.Client(base_url=router.base_url, headers={"X-API-Key": API_KEY}) as http:
        bad = http.post("/route/explain", json={"sender_id": "x"})
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "validation_error"


def test_every_log_row_records_the_routing_version(client: httpx.Client, database_url: str) -> None:
    routed = client.post("/route", json={"sender_id": "v", "payload": {"route": "one"}}).json()
    version = client.get("/health").json()["routing"]["version"]
    assert len(version) == 12
    assert client.get(f"/logs/{routed['log_id']}").json()["routing_version"] == version
    assert client.get("/logs").json()["items"][0]["routing_version"] == version
    stored = query(database_url, "SELECT routing_version FROM signals")
    assert stored == [{"routing_version": version}]
