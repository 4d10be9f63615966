"""POST /admin/reload on both backends: a valid file whose tests pass swaps in and routes the
next signal (whose log row records the new version); anything else is refused and reported."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router_service.devtools.demo_agents import RunningAgents
from tests.conftest import API_KEY, make_settings
from tests.support.metrics import metric
from tests.support.routing_files import routing_yaml
from tests.support.server import RouterServer

READER_KEY = "reader-key"


@pytest.fixture(scope="module")
def live_file(tmp_path_factory: pytest.TempPathFactory, agents: RunningAgents) -> Path:
    return tmp_path_factory.mktemp("reload") / "routing.yaml"


@pytest.fixture(scope="module")
def router(database_url: str, live_file: Path, agents: RunningAgents) -> Iterator[RouterServer]:
    live_file.write_text(routing_yaml(agents))
    settings = make_settings(
        database_url, live_file, api_keys=f"reader:{READER_KEY}:route+logs:read"
    )
    with RouterServer(settings) as server:
        yield server


@pytest.fixture(autouse=True)
def _original_file(live_file: Path, agents: RunningAgents, client: httpx.Client) -> None:
    """Each test starts from the original file, active."""
    live_file.write_text(routing_yaml(agents))
    assert client.post("/admin/reload").status_code == 200


def candidate(agents: RunningAgents, tests: str = "", one_to: str = "beta") -> str:
    """The test routing file, except that kind ``one`` now goes to ``one_to``, and ``tests``."""
    return routing_yaml(agents, agents_of={"one": [one_to]}) + tests


def test_a_valid_file_swaps_in_and_routes_the_next_signal(
    client: httpx.Client, agents: RunningAgents, live_file: Path
) -> None:
    before = client.get("/health").json()["routing"]["version"]
    live_file.write_text(candidate(agents, "tests:\n  - {payload: {route: one}, agents: [beta]}\n"))
    answer = client.post("/admin/reload")
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["outcome"] == "reloaded"
    assert report["previous_version"] == before
    assert report["by"] == "default"
    health = client.get("/health").json()["routing"]
    assert health["version"] == report["version"] != before
    assert health["last_reload"]["outcome"] == "reloaded"
    routed = client.post("/route", json={"sender_id": "r", "payload": {"route": "one"}}).json()
    assert routed["routed_agents"] == ["beta"]
    logged = client.get(f"/logs/{routed['log_id']}").json()
    assert logged["routing_version"] == report["version"]
    again = client.post("/admin/reload").json()
    assert again["outcome"] == "unchanged"


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        ("invalid", "routes.one.agents[0]: unknown agent 'nobody'"),
        ("failing tests", "expected agents [alpha], got agents [beta]"),
    ],
)
def test_a_bad_file_is_refused_and_the_old_version_stays(
    client: httpx.Client, agents: RunningAgents, live_file: Path, breakage: str, reason: str
) -> None:
    before = client.get("/health").json()["routing"]["version"]
    refused_before = metric(client, "routing_reloads_total")
    if breakage == "invalid":
        live_file.write_text(candidate(agents, one_to="nobody"))
    else:
        live_file.write_text(
            candidate(agents, "tests:\n  - {payload: {route: one}, agents: [alpha]}\n")
        )
    answer = client.post("/admin/reload")
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "routing_reload_refused"
    assert reason in error["message"]
    assert f"version {before} stays active" in error["message"]
    health = client.get("/health").json()["routing"]
    assert health["version"] == before
    assert health["last_reload"]["outcome"] == "refused"
    assert metric(client, "routing_reloads_total") == refused_before + 1
    routed = client.post("/route", json={"sender_id": "r", "payload": {"route": "one"}}).json()
    assert routed["routed_agents"] == ["alpha"]


def test_reload_needs_the_config_admin_scope(router: RouterServer) -> None:
    with httpx.Client(base_url=router.base_url, headers={"X-API-Key": READER_KEY}) as reader:
        denied = reader.post("/admin/reload")
    assert denied.status_code == 403
    assert "config:admin" in denied.json()["error"]["message"]
    with httpx.Client(base_url=router.base_url, headers={"X-API-Key": API_KEY}) as admin:
        assert admin.post("/admin/reload").status_code == 200
