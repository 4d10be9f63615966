"""Follow one signal: response, log lines, the agent's traceparent and exported spans agree."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router_service.devtools.demo_agents import RunningAgents
from tests.support.collector import Collector
from tests.support.db import sqlite_url
from tests.support.metrics import sample
from tests.support.polling import wait_for
from tests.support.ports import free_port
from tests.support.processes import BIN, ROOT, start, stop
from tests.support.routing_files import routing_yaml


@pytest.fixture
def collector() -> Iterator[Collector]:
    with Collector() as running:
        yield running


def test_one_signal_has_one_trace_everywhere(
    tmp_path: Path, agents: RunningAgents, collector: Collector
) -> None:
    agents.reset()
    config = tmp_path / "routing.yaml"
    config.write_text(routing_yaml(agents))
    port = free_port()
    env = {
        "API_KEY": "k",
        "DATABASE_URL": sqlite_url(tmp_path / "r.db"),
        "ROUTING_CONFIG": str(config),
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "50",  # ms between the SDK's exports
    }
    subprocess.run(
        [str(BIN / "router-service"), "migrate"],
        env={**env, "PATH": str(BIN)},
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=120,
    )
    log_file = tmp_path / "router.log"
    with log_file.open("wb") as out:
        router = start(
            [str(BIN / "router-service"), "serve", "--port", str(port)], env, port, stdout=out
        )
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": "k"})
        try:
            response = client.post("/route", json={"sender_id": "t", "payload": {"route": "one"}})
            # The caller's traceparent says not to record: continued, not exported.
            unsampled = f"00-{'ab' * 16}-{'cd' * 8}-00"
            quiet = client.post(
                "/route",
                json={"sender_id": "t", "payload": {"route": "one"}},
                headers={"traceparent": unsampled},
            )
            assert quiet.json()["trace_id"] == "ab" * 16
            assert quiet.headers["traceparent"].endswith("-00")
            counted = wait_for(
                lambda: sample(client, "otel_spans_total", result="exported") >= 2,
                what="the two spans of the sampled signal counted as exported",
            )
            assert counted
        finally:
            client.close()
            stop(router)  # SIGTERM: the lifespan flushes the queued spans
    body = response.json()
    trace_id = body["trace_id"]
    assert response.headers["traceparent"].split("-")[1] == trace_id

    received, quietly = agents.received("alpha")
    assert quietly["headers"]["traceparent"].endswith("-00")  # the agent is told not to record
    _, agent_trace, agent_span, _ = received["headers"]["traceparent"].split("-")
    assert agent_trace == trace_id

    lines = [json.loads(line) for line in log_file.read_text().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("trace_id") == trace_id]
    events = {line["event"] for line in mine}
    assert {"signal.routed", "agent.attempt"} <= events
    [attempt] = [line for line in mine if line["event"] == "agent.attempt"]
    assert attempt["span_id"] == agent_span
    assert all("span_id" in line for line in mine)
    assert "k" not in {str(v) for line in lines for v in line.values()}  # the key is never logged

    exported = {span.span_id.hex(): span for span in collector.spans}  # type: ignore[attr-defined]
    assert {span.trace_id.hex() for span in exported.values()} == {trace_id}
    agent_call = exported[agent_span]
    assert agent_call.name == "agent alpha"
    server_span = exported[agent_call.parent_span_id.hex()]
    assert server_span.name == "POST /route"


def test_without_an_endpoint_the_opentelemetry_sdk_is_never_loaded(tmp_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from router_service.api.app import create_app\n"
        "from router_service.config.settings import Settings\n"
        f"s = Settings(_env_file=None, api_key='k', database_url='sqlite:///{tmp_path}/x.db')\n"
        "from router_service.runtime.services import build_services\n"
        "from router_service.config.routing_source import RoutingSource\n"
        "from router_service.observability.metrics import Metrics\n"
        "async def main():\n"
        "    svc = build_services(s, RoutingSource.from_file(s.routing_config), Metrics())\n"
        "    await svc.close()\n"
        "asyncio.run(main())\n"
        # FastAPI itself imports the (no-op) OpenTelemetry API; the SDK and exporter are ours.
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', "
        "'opentelemetry.exporter', 'router_service.observability.otel'))))\n"
    )
    result = subprocess.run(
        [str(BIN / "python"), "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
        env={"PATH": str(BIN)},
    )
    assert result.stdout.strip() == "[]"
