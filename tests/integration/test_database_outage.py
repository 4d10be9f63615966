"""The database goes away: 503 fast, nothing dispatched, /health says so; then it comes back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from router_service.devtools.demo_agents import RunningAgents
from tests.conftest import API_KEY, make_settings
from tests.support.db import query
from tests.support.metrics import metric
from tests.support.polling import wait_for
from tests.support.proxy import FaultyProxy
from tests.support.raw_agent import RawAgent, Received, response
from tests.support.routing_files import agent, routing_text
from tests.support.server import RouterServer


@pytest.fixture
def proxied_router(
    proxy: FaultyProxy, migrated: object, routing_file: Path
) -> Iterator[RouterServer]:
    url = make_url(migrated("postgres")).set(host="127.0.0.1", port=proxy.port)  # type: ignore[operator]
    settings = make_settings(
        url.render_as_string(hide_password=False), routing_file, db_connect_timeout_s=1
    )
    with RouterServer(settings) as server:
        yield server


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
        r = client.post("/route", json=signal)
        assert r.status_code == 200, r.text
        assert client.get("/health").status_code == 200
        assert len(agents.received("alpha")) == 2


def test_killed_backends_never_make_a_500(
    migrated: object, routing_file: Path, agents: RunningAgents
) -> None:
    url = migrated("postgres")  # type: ignore[operator]
    database = make_url(url).database
    server = RouterServer(make_settings(url, routing_file)).start()
    statuses = []
    try:
        with httpx.Client(
            base_url=server.base_url, headers={"X-API-Key": API_KEY}, timeout=30
        ) as client:
            for round_ in range(6):
                for index in range(5):
                    body = {
                        "sender_id": "kill",
                        "payload": {"route": "one", "i": index, "r": round_},
                    }
                    statuses.append(client.post("/route", json=body).status_code)
                query(
                    url,
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'router-service' AND datname = $1",
                    database,
                )
            after = client.post("/route", json={"sender_id": "kill", "payload": {"route": "one"}})
    finally:
        server.stop()
    assert 500 not in statuses
    assert set(statuses) <= {200, 503}
    assert after.status_code in (200, 503)
    assert statuses.count(200) >= 20  # the pool replaces killed connections by itself


def test_an_outcome_written_again_once_the_database_is_back_is_sent_once(
    proxy: FaultyProxy, migrated: object, tmp_path: Path
) -> None:
    """The database goes away while the agent has the signal: the router writes the outcome
    again until the database is back (within the signal's lease), and answers 200. Before,
    it answered 503 and the signal stayed in flight, for the sweeper to send a second time."""

    async def cut_then_answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        proxy.cut()  # the outage begins after the claim and before the outcome
        writer.write(response())
        await writer.drain()
        return True

    url = make_url(migrated("postgres")).set(host="127.0.0.1", port=proxy.port)  # type: ignore[operator]
    with RawAgent(cut_then_answer) as raw:
        routing = tmp_path / "routing.yaml"
        routing.write_text(
            routing_text([agent("held", raw.url())], {"default": {"agents": ["held"]}})
        )
        settings = make_settings(
            url.render_as_string(hide_password=False),
            routing,
            db_connect_timeout_s=1,
            request_deadline_ms=10_000,  # the outcome is written again for 15 s at most
        )
        server = RouterServer(settings).start()
        try:
            with (
                httpx.Client(
                    base_url=server.base_url, headers={"X-API-Key": API_KEY}, timeout=30
                ) as client,
                httpx.Client(base_url=server.base_url) as watcher,
                ThreadPoolExecutor(1) as pool,
            ):
                body = {"sender_id": "outage", "payload": {"n": 1}}
                answer = pool.submit(client.post, "/route", json=body)
                wait_for(
                    lambda: metric(watcher, "outcome_write_retries_total") >= 1 or answer.done(),
                    what="the outcome's write to be retried",
                )
                assert not answer.done(), answer.result().text  # still waiting, not a 503
                proxy.restore()
                routed = answer.result(timeout=30)
                assert routed.status_code == 200, routed.text
                assert routed.json()["status"] == "delivered"
                stored = client.get(f"/logs/{routed.json()['log_id']}")
                assert stored.json()["status"] == "delivered"  # no lease left to run out
        finally:
            server.stop()
        assert len(raw.requests) == 1
