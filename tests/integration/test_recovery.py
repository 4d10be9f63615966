"""Crash recovery, graceful drain, automatic redelivery and retention."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from router_service.config.routing_file import load_routing_config
from router_service.config.routing_source import RoutingSource
from router_service.devtools.demo_agents import RunningAgents
from router_service.domain.signal import Signal
from router_service.observability.metrics import Metrics
from router_service.runtime.services import Services, build_services
from router_service.service.recovery import sweep_batch
from tests.conftest import API_KEY, make_settings
from tests.support.db import migrated_database, query, wipe
from tests.support.polling import wait_for
from tests.support.ports import free_port
from tests.support.processes import BIN, ROOT, start, stop
from tests.support.server import RouterServer


def subprocess_env(database_url: str, routing_file: Path, **extra: str) -> dict[str, str]:
    return {
        "API_KEY": API_KEY,
        "DATABASE_URL": database_url,
        "ROUTING_CONFIG": str(routing_file),
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def test_signal_of_a_killed_router_is_finished_by_another_replica(
    database_url: str, routing_file: Path, agents: RunningAgents
) -> None:
    agents.set("alpha", mode="slow", delay_ms=3000)
    port = free_port()
    env = subprocess_env(
        database_url, routing_file, REQUEST_DEADLINE_MS="1000", AGENT_TIMEOUT_MS="5000"
    )
    crashed = start([str(BIN / "router-service"), "serve", "--port", str(port)], env, port)
    body = {"sender_id": "crash", "payload": {"route": "one"}, "log_id": "crash-1"}
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(
            httpx.post,
            f"http://127.0.0.1:{port}/route",
            json=body,
            headers={"X-API-Key": API_KEY},
            timeout=10,
        )
        agents.wait_received("alpha", 1)
        os.killpg(crashed.pid, signal.SIGKILL)  # mid-dispatch, before anything is recorded
        crashed.wait(10)
    [row] = query(database_url, "SELECT status FROM signals WHERE log_id = $1", "crash-1")
    assert row["status"] == "in_progress"

    agents.set("alpha", mode="ok")
    survivor = RouterServer(
        make_settings(database_url, routing_file, request_deadline_ms=1000, sweep_interval_s=0.1)
    ).start()
    try:
        receipts = agents.wait_received("alpha", 2, timeout_s=15)
        wait_for(
            lambda: (
                query(database_url, "SELECT status FROM signals WHERE log_id = $1", "crash-1")
                == [{"status": "delivered"}]
            ),
            timeout_s=10,
            what="the survivor to deliver crash-1",
        )
    finally:
        survivor.stop()
    keys = {r["headers"]["idempotency-key"] for r in receipts}
    assert keys == {"crash-1"}  # redelivered under the same key: agents can deduplicate


def test_sigterm_drains_in_flight_requests_and_exits_0(
    database_url: str, routing_file: Path, agents: RunningAgents
) -> None:
    agents.set("alpha", mode="slow", delay_ms=700)
    port = free_port()
    env = subprocess_env(database_url, routing_file, DRAIN_TIMEOUT_S="5")
    router = start([str(BIN / "router-service"), "serve", "--port", str(port)], env, port)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            answer = pool.submit(
                httpx.post,
                f"http://127.0.0.1:{port}/route",
                json={"sender_id": "drain", "payload": {"route": "one"}},
                headers={"X-API-Key": API_KEY},
                timeout=10,
            )
            agents.wait_received("alpha", 1)
            os.killpg(router.pid, signal.SIGTERM)
            assert answer.result().status_code == 200
        assert router.wait(15) == 0
    finally:
        stop(router)


@pytest.fixture
def worker_router(database_url: str, routing_file: Path) -> Iterator[RouterServer]:
    """A router whose redelivery worker runs every 50 ms, on empty tables: a dead letter an
    earlier test left would be redelivered too, and could be the one a test waits for."""
    wipe(database_url)
    settings = make_settings(
        database_url,
        routing_file,
        dlq_worker_enabled=True,
        dlq_worker_interval_s=0.05,
        dlq_retry_base_s=0.05,
        dlq_retry_cap_s=0.1,
        max_replays=2,
    )
    with RouterServer(settings) as server:
        yield server


def test_redelivery_worker_replays_until_success(
    worker_router: RouterServer, agents: RunningAgents
) -> None:
    agents.set("alpha", mode="fail", status=400, script=[{"status": 400}])
    headers = {"X-API-Key": API_KEY}
    parked = httpx.post(
        f"{worker_router.base_url}/route",
        json={"sender_id": "w", "payload": {"route": "one"}},
        headers=headers,
    )
    assert parked.status_code == 202
    agents.set("alpha", mode="ok")
    agents.wait_received("alpha", 2)
    log_url = f"{worker_router.base_url}/logs/{parked.json()['log_id']}"
    wait_for(
        lambda: httpx.get(log_url, headers=headers).json()["status"] == "delivered",
        timeout_s=10,
        what="the worker to deliver the parked signal",
    )


def test_redelivery_worker_backs_off_then_exhausts(
    worker_router: RouterServer, agents: RunningAgents
) -> None:
    agents.set("alpha", mode="fail", status=400)
    headers = {"X-API-Key": API_KEY}
    httpx.post(
        f"{worker_router.base_url}/route",
        json={"sender_id": "w", "payload": {"route": "one"}},
        headers=headers,
    )
    dlq_url = f"{worker_router.base_url}/dlq"
    wait_for(
        lambda: (
            len(httpx.get(dlq_url, params={"status": "exhausted"}, headers=headers).json()["items"])
            == 1
        ),
        timeout_s=10,
        what="an exhausted dead letter",
    )
    [entry] = httpx.get(dlq_url, params={"status": "exhausted"}, headers=headers).json()["items"]
    assert entry["replay_count"] == 2
    assert len(agents.received("alpha")) == 3  # the call, then exactly MAX_REPLAYS replays


def test_worker_command_redelivers_and_stops_cleanly(
    router: RouterServer,
    client: httpx.Client,
    agents: RunningAgents,
    database_url: str,
    routing_file: Path,
) -> None:
    agents.set("alpha", mode="fail", status=400)
    parked = client.post("/route", json={"sender_id": "w", "payload": {"route": "one"}})
    agents.set("alpha", mode="ok")
    env = subprocess_env(database_url, routing_file, DLQ_WORKER_INTERVAL_S="0.1")
    worker = subprocess.Popen(
        [str(BIN / "router-service"), "worker"],
        env={**os.environ, **env},
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        agents.wait_received("alpha", 2, timeout_s=20)
        wait_for(
            lambda: client.get(f"/logs/{parked.json()['log_id']}").json()["status"] == "delivered",
            timeout_s=10,
            what="the worker command to deliver the parked signal",
        )
        os.killpg(worker.pid, signal.SIGTERM)
        assert worker.wait(15) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(5)
        assert worker.stderr is not None
        worker.stderr.close()


def test_prune_deletes_old_finished_signals_and_keeps_pending_dead_letters(
    router: RouterServer,
    client: httpx.Client,
    agents: RunningAgents,
    database_url: str,
    routing_file: Path,
) -> None:
    done = client.post("/route", json={"sender_id": "p", "payload": {"route": "one"}}).json()
    agents.set("alpha", mode="fail", status=400)
    parked = client.post("/route", json={"sender_id": "p", "payload": {"route": "one"}}).json()
    fresh = client.post("/route", json={"sender_id": "p", "payload": {"route": "race"}})
    assert fresh.status_code in (200, 202)
    old = "2000-01-01 00:00:00" if database_url.startswith("sqlite") else "2000-01-01T00:00:00Z"
    for log_id in (done["log_id"], parked["log_id"]):
        query(database_url, f"UPDATE signals SET created_at = '{old}' WHERE log_id = $1", log_id)  # noqa: S608 - constant
    result = subprocess.run(
        [str(BIN / "router-service"), "prune", "--older-than-days", "30"],
        env={**os.environ, **subprocess_env(database_url, routing_file)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "pruned 1 signals" in result.stdout
    remaining = {r["log_id"] for r in query(database_url, "SELECT log_id FROM signals")}
    assert done["log_id"] not in remaining
    assert parked["log_id"] in remaining  # its dead letter is still pending
    assert fresh.json()["log_id"] in remaining


async def _two_sweepers_finish(
    database_url: str, routing_file: Path, count: int, **overrides: object
) -> None:
    """``count`` signals left in flight by a crashed replica (their lease already expired),
    finished by two replicas' sweepers polling side by side."""
    settings = make_settings(
        database_url, routing_file, request_deadline_ms=1200, agent_timeout_ms=1100, **overrides
    )
    routing = RoutingSource.fixed(load_routing_config(routing_file))
    replicas = [build_services(settings, routing, Metrics()) for _ in range(2)]
    try:
        plan = routing.current().config.table.plan("one", "route-one", None)
        for index in range(count):
            signal = Signal.create(
                sender_id="crashed",
                payload={"route": "one", "i": index},
                timestamp=datetime.now(UTC),
            )
            await replicas[0].store.claim(signal, plan, "0" * 32, "crashed-replica", lease_s=0.001)

        in_flight = "SELECT count(*) AS n FROM signals WHERE status = 'in_progress'"

        async def sweep(services: Services) -> None:
            give_up = asyncio.get_running_loop().time() + 60
            while (await asyncio.to_thread(query, database_url, in_flight))[0]["n"]:
                assert asyncio.get_running_loop().time() < give_up, "sweep did not finish"
                if not await services.sweeper.sweep_once():
                    await asyncio.sleep(0.05)  # this test's sweep interval

        await asyncio.gather(*(sweep(services) for services in replicas))
    finally:
        for services in replicas:
            await services.close()


@pytest.mark.parametrize("concurrency", [None, 4])
def test_two_sweepers_dispatch_each_expired_signal_exactly_once(
    database_url: str,
    routing_file: Path,
    agents: RunningAgents,
    concurrency: int | None,
    tmp_path: Path,
) -> None:
    """Slow agent (600 ms of the 1.2 s deadline per signal; the 1.1 s attempt timeout leaves a
    loaded machine room, so a slow answer is not retried), 40 expired signals: a sweeper takes
    only what it finishes within its 2.4 s lease, so the other replica never takes them over too
    (the old sweeper took all 40 and finished them 8 at a time: 3 s)."""
    agents.set("alpha", mode="slow", delay_ms=600)
    overrides = {} if concurrency is None else {"sweep_concurrency": concurrency}
    backend = "sqlite" if database_url.startswith("sqlite") else "postgres"
    # A database of its own: the module's router, if an earlier test started it, sweeps the
    # shared one with its own (shorter) timeouts and would be a third sweeper.
    with migrated_database(backend, tmp_path) as url:
        asyncio.run(_two_sweepers_finish(url, routing_file, 40, **overrides))
        statuses = query(url, "SELECT status, count(*) AS n FROM signals GROUP BY status")
    sent = Counter(entry["body"]["log_id"] for entry in agents.received("alpha"))
    assert len(sent) == 40
    assert set(sent.values()) == {1}, [n for n in sent.values() if n > 1]
    assert [(r["status"], r["n"]) for r in statuses] == [("delivered", 40)]


def test_a_sweep_takes_only_what_it_can_finish_within_its_lease() -> None:
    assert sweep_batch(concurrency=8, lease_s=6.0, deadline_s=3.0) == 8
    assert sweep_batch(concurrency=8, lease_s=12.0, deadline_s=3.0) == 24
    assert sweep_batch(concurrency=8, lease_s=3.0, deadline_s=3.0) == 8


def test_dlq_backlog_is_current_right_after_a_sweep_and_a_replay(
    database_url: str, routing_file: Path, agents: RunningAgents, tmp_path: Path
) -> None:
    """No wait for the periodic refresh: the gauge follows the process's own changes."""
    agents.set("alpha", mode="fail", status=400)
    backend = "sqlite" if database_url.startswith("sqlite") else "postgres"

    async def scenario(url: str) -> tuple[float, float]:
        settings = make_settings(url, routing_file, dlq_backlog_refresh_s=3600)
        routing = RoutingSource.fixed(load_routing_config(routing_file))
        services = build_services(settings, routing, Metrics())
        try:
            plan = routing.current().config.table.plan("one", "route-one", None)
            signal = Signal.create(
                sender_id="crashed", payload={"route": "one"}, timestamp=datetime.now(UTC)
            )
            await services.store.claim(signal, plan, "0" * 32, "crashed-replica", lease_s=0.001)
            assert await services.sweeper.sweep_once() == 1
            after_sweep = services.metrics.registry.get_sample_value("dlq_backlog")
            agents.set("alpha", mode="ok")
            assert (await services.replayer.replay(limit=10)).succeeded == 1
            return after_sweep, services.metrics.registry.get_sample_value("dlq_backlog")
        finally:
            await services.close()

    # A database of its own: the module's router, if an earlier test started it, sweeps the
    # shared one and could take the expired lease before this sweep does.
    with migrated_database(backend, tmp_path) as url:
        assert asyncio.run(scenario(url)) == (1, 0)
