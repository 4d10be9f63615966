"""SHADOW_ROUTING_CONFIG on both backends: live signals classified by a candidate too; the
differences counted and logged; the shadow never dispatches."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router_service.devtools.demo_agents import RunningAgents
from tests.conftest import make_settings
from tests.support.routing_files import routing_yaml
from tests.support.server import RouterServer


@pytest.fixture(scope="module")
def router(
    database_url: str,
    routing_file: Path,
    agents: RunningAgents,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RouterServer]:
    shadow = tmp_path_factory.mktemp("shadow") / "candidate.yaml"
    # The candidate sends kind "one" to alpha and beta as kind "race".
    shadow.write_text(routing_yaml(agents, kind_of={"one": "race"}))
    settings = make_settings(database_url, routing_file, shadow_routing_config=shadow)
    with RouterServer(settings) as server:
        yield server


def diffs(client: httpx.Client) -> dict[str, float]:
    found = {}
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("shadow_route_diff_total{"):
            labels, value = line.rsplit(" ", 1)
            found[labels.removeprefix("shadow_route_diff_total")] = float(value)
    return found


def test_the_shadow_counts_differences_and_never_dispatches(
    client: httpx.Client, agents: RunningAgents
) -> None:
    before = diffs(client)
    one = client.post("/route", json={"sender_id": "sh", "payload": {"route": "one"}}).json()
    client.post("/route", json={"sender_id": "sh", "payload": {"route": "chain"}})  # same in both
    assert one["kind"] == "one"
    assert one["routed_agents"] == ["alpha"]
    assert len(agents.received("alpha")) == 2  # one and chain (alpha answers first)
    assert agents.received("beta") == []  # the shadow's plan for kind one sent nothing
    after = diffs(client)
    key = '{active_kind="one",shadow_kind="race"}'
    assert after[key] == before.get(key, 0) + 1
    assert sum(after.values()) == sum(before.values()) + 1
