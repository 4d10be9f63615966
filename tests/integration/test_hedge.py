"""Hedge routes on a real router (both backends) against real agents: the next agent starts
only when the first is slow, the winner cancels the rest, a hedge is marked and counted, and an
empty budget means no hedge rather than a failure."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from router_service.devtools.demo_agents import RunningAgents
from tests.support.metrics import sample
from tests.support.routing_files import agent, by_route, routing_text


@pytest.fixture(scope="module")
def routing_file(tmp_path_factory: pytest.TempPathFactory, agents: RunningAgents) -> Path:
    path = tmp_path_factory.mktemp("hedge") / "routing.yaml"
    names = ("alpha", "beta", "gamma")
    path.write_text(
        routing_text(
            [agent(name, agents.url(name)) for name in names],
            {
                "hedged": {
                    "agents": ["alpha", "beta"],
                    "hedge": {"after_ms": 100, "max_extra": 1.0},
                },
                "stingy": {"agents": ["gamma", "beta"], "hedge": {"after_ms": 100, "max_extra": 0}},
                "default": {"agents": ["alpha"]},
            },
            [by_route("hedged", rule_id="r-hedged"), by_route("stingy", rule_id="r-stingy")],
        )
    )
    return path


def send(client: httpx.Client, route: str, n: int = 0) -> dict[str, object]:
    body = {"sender_id": "hedger", "payload": {"route": route, "n": n}}
    response = client.post("/route", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, object] = response.json()
    return answer


def hedges(client: httpx.Client, agent: str, outcome: str) -> float:
    return sample(client, "hedges_total", agent=agent, outcome=outcome)


def test_a_slow_first_agent_is_hedged_and_the_hedge_wins(
    client: httpx.Client, agents: RunningAgents
) -> None:
    before = hedges(client, "beta", "won")
    agents.set("alpha", mode="slow", delay_ms=1500)
    answer = send(client, "hedged", 1)
    assert answer["mode"] == "hedge"
    assert answer["status"] == "delivered"
    assert answer["response"] == {"agent": "beta", "handled": True, "kind": "hedged",
                                  "log_id": answer["log_id"]}  # fmt: skip
    results = {r["agent"]: r for r in answer["results"]}  # type: ignore[attr-defined]
    assert results["beta"]["hedge"] is True
    assert results["alpha"]["error"] == "cancelled"
    assert "hedge" not in results["alpha"]
    assert float(answer["latency_ms"]) < 1000  # type: ignore[arg-type]
    assert hedges(client, "beta", "won") == before + 1


def test_a_fast_first_agent_is_not_hedged(client: httpx.Client, agents: RunningAgents) -> None:
    answer = send(client, "hedged", 2)
    assert [r["agent"] for r in answer["results"]] == ["alpha"]  # type: ignore[attr-defined]
    assert agents.received("beta") == []


def test_a_fast_failure_moves_on_without_a_hedge(
    client: httpx.Client, agents: RunningAgents
) -> None:
    agents.set("alpha", mode="fail", status=400)
    answer = send(client, "hedged", 3)
    results = answer["results"]
    assert [r["agent"] for r in results] == ["alpha", "beta"]  # type: ignore[attr-defined]
    assert all("hedge" not in r for r in results)  # type: ignore[attr-defined]
    assert answer["status"] == "delivered"


def test_an_empty_budget_means_no_hedge_not_a_failure(
    client: httpx.Client, agents: RunningAgents
) -> None:
    before = hedges(client, "beta", "no_budget")
    agents.set("gamma", mode="slow", delay_ms=300)
    answer = send(client, "stingy", 4)
    assert answer["status"] == "delivered"
    assert [r["agent"] for r in answer["results"]] == ["gamma"]  # type: ignore[attr-defined]
    assert agents.received("beta") == []
    assert hedges(client, "beta", "no_budget") == before + 1
