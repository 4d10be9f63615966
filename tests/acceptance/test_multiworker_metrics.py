"""Several worker processes still report the whole service on /metrics."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.support.db import sqlite_url
from tests.support.ports import free_ports
from tests.support.processes import BIN, migrate, start, stop
from tests.support.routing_files import shipped_routing_on


def total(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def test_two_workers_metrics_add_up_to_the_requests_sent(tmp_path: Path) -> None:
    agents_port, router_port = free_ports(2)
    env = {
        "API_KEY": "k",
        "DATABASE_URL": sqlite_url(tmp_path / "r.db"),
        "ROUTING_CONFIG": str(shipped_routing_on(agents_port, tmp_path)),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    migrate(env)
    agents = start(
        [str(BIN / "router-service"), "demo-agents", "--port", str(agents_port)], env, agents_port
    )
    router = start(
        [str(BIN / "router-service"), "serve", "--port", str(router_port), "--workers", "2"],
        env,
        router_port,
    )
    sent = 60
    pids = set()
    try:
        for index in range(sent):
            # A new connection each time, so the kernel spreads them over both workers.
            response = httpx.post(
                f"http://127.0.0.1:{router_port}/route",
                json={"sender_id": "w", "payload": {"message": f"policy question {index}"}},
                headers={"X-API-Key": "k", "Connection": "close"},
            )
            assert response.status_code == 200
        text = ""
        for _ in range(4):
            text = httpx.get(f"http://127.0.0.1:{router_port}/metrics").text
            pids.add(text)
    finally:
        stop(router)
        stop(agents)
    assert total(text, "signals_received_total") == sent
    assert total(text, "router_latency_seconds_count") == sent
    assert 'router_build_info{version="' in text
    written = list((tmp_path / "metrics").glob("*.db"))
    worker_pids = {p.stem.rsplit("_", 1)[-1] for p in written}
    assert len(worker_pids) >= 2  # both workers wrote samples
