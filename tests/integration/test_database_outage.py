"""The database goes away: 503 fast, nothing dispatched, /health says so; then it comes back."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from router_service.devtools.demo_agents import RunningAgents
from tests.conftest import API_KEY, make_settings
from tests.support.proxy import FaultyProxy
from tests.support.server import RouterServer


@pytest.fixture
def proxy(migrated: object) -> Iterator[FaultyProxy]:
    url = make_url(migrated("postgres"))  # type: ignore[operator]
    running = FaultyProxy(url.host or "127.0.0.1", url.port or 5432).start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def proxied_router(
    proxy: FaultyProxy, migrated: object, routing_file: Path
) -> Iterator[RouterServer]:
    url = make_url(migrated("postgres")).set(host="127.0.0.1", port=proxy.port)  # type: ignore[operator]
    settings = make_settings(
        url.render_as_string(hide_password=False), routing_file, db_connect_timeout_s=1
    )
    server = RouterServer(settings).start()
    try:
        yield server
    finally:
        server.stop()


def test_database_outage_is_503_then_recovers_without_restart(
    proxied_router: RouterServer, proxy: FaultyProxy, agents: RunningAgents
) -> None:
    with httpx.Client(
        base_url=proxied_router.base_url, headers={"X-API-Key": API_KEY}, timeout=30
    ) as client:
        signal = {"sender_id": "outage", "payload": {"route": "one"}}
        assert client.post("/route", json=signal).status_code == 200
        assert len(agents.received("alpha")) == 1

        proxy.cut()
        started = time.perf_counter()
        down = client.post("/route", json=signal)
        elapsed = time.perf_counter() - started
        assert down.status_code == 503
        assert down.json()["error"]["code"] == "database_unavailable"
        assert elapsed < 3.0  # bounded by the connect timeout, not a hang
        assert len(agents.received("alpha")) == 1  # nothing dispatched without a log row
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"
        assert health.json()["checks"]["database"]["status"] == "unavailable"
        assert client.get("/logs").status_code == 503

        proxy.restore()
        assert client.post("/route", json=signal).status_code == 200
        assert client.get("/health").status_code == 200
        assert len(agents.received("alpha")) == 2
