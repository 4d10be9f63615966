"""Routers under test on both backends, served over real HTTP to real demo agents."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router_service.devtools.demo_agents import RunningAgents
from tests.conftest import API_KEY, make_settings
from tests.support.db import wipe
from tests.support.server import RouterServer


@pytest.fixture(scope="module")
def router(database_url: str, routing_file: Path) -> Iterator[RouterServer]:
    with RouterServer(make_settings(database_url, routing_file)) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_state(request: pytest.FixtureRequest, agents: RunningAgents) -> None:
    """Every test starts with obliging agents and, when it uses a router, empty tables."""
    agents.reset()
    if "router" in request.fixturenames:
        wipe(request.getfixturevalue("database_url"))


@pytest.fixture
def client(router: RouterServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=router.base_url, headers={"X-API-Key": API_KEY}, timeout=30) as http:
        yield http
