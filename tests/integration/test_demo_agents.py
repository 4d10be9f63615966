"""Demo agents over real loopback HTTP: every mode, scripts, receipts, reset and clean stops."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from router_service.devtools.demo_agents import DemoAgentServer, RunningAgents, run_in_thread

SIGNAL = {"log_id": "L-1", "sender_id": "s-1", "kind": "billing", "payload": {"a": 1}}


@pytest.fixture(scope="module")
def server() -> Iterator[RunningAgents]:
    running = run_in_thread()
    yield running
    running.stop()


@pytest.fixture
def agents(server: RunningAgents) -> RunningAgents:
    server.reset()
    return server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as http:
        yield http


def test_default_agent_answers_handled_with_kind_and_log_id(
    agents: RunningAgents, client: httpx.Client
) -> None:
    response = client.post(agents.url("any-name"), json=SIGNAL)

    assert response.status_code == 200
    assert response.json() == {
        "agent": "any-name",
        "handled": True,
        "kind": "billing",
        "log_id": "L-1",
    }


def test_receipts_record_body_headers_and_time(agents: RunningAgents, client: httpx.Client) -> None:
    headers = {
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "Idempotency-Key": "L-1",
    }
    before = time.time()
    client.post(agents.url("billing"), json=SIGNAL, headers=headers)
    client.post(agents.url("billing"), json={**SIGNAL, "log_id": "L-2"})

    items = agents.received("billing")

    assert [item["body"]["log_id"] for item in items] == ["L-1", "L-2"]
    assert items[0]["body"] == SIGNAL
    assert items[0]["headers"] == {
        "idempotency-key": "L-1",
        "traceparent": headers["traceparent"],
        "content-type": "application/json",
    }
    assert items[1]["headers"]["traceparent"] is None
    assert before <= items[0]["received_at"] <= items[1]["received_at"] <= time.time()


def test_received_endpoint_counts_per_agent(agents: RunningAgents, client: httpx.Client) -> None:
    client.post(agents.url("a"), json=SIGNAL)
    client.post(agents.url("a"), json=SIGNAL)
    client.post(agents.url("b"), json=SIGNAL)

    one = client.get(f"{agents.base_url}/_received/a").json()
    counts = client.get(f"{agents.base_url}/_received").json()

    assert one["count"] == 2
    assert len(one["items"]) == 2
    assert counts == {"counts": {"a": 2, "b": 1}, "total": 3}
    assert client.get(f"{agents.base_url}/_received/never-called").json() == {
        "items": [],
        "count": 0,
    }


def test_fail_mode_answers_status_and_retry_after(
    agents: RunningAgents, client: httpx.Client
) -> None:
    agents.set("a", mode="fail", status=503, retry_after=1)
    agents.set("b", mode="fail", status=400)

    failed = client.post(agents.url("a"), json=SIGNAL)
    rejected = client.post(agents.url("b"), json=SIGNAL)

    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "1"
    assert failed.json()["handled"] is False
    assert rejected.status_code == 400
    assert "Retry-After" not in rejected.headers


def test_script_is_consumed_in_order_then_mode_applies(
    agents: RunningAgents, client: httpx.Client
) -> None:
    script = [{"status": 503}, {"status": 503, "retry_after": 0}, {"status": 200}]
    agents.set("a", mode="fail", status=500, script=script)

    answers = [client.post(agents.url("a"), json=SIGNAL) for _ in range(5)]

    assert [r.status_code for r in answers] == [503, 503, 200, 500, 500]
    assert [r.headers.get("Retry-After") for r in answers] == [None, "0", None, None, None]
    assert answers[2].json()["handled"] is True
    assert len(agents.received("a")) == 5


def test_script_can_hang_once_then_succeed(agents: RunningAgents, client: httpx.Client) -> None:
    agents.set("a", script=[{"mode": "hang"}, {"status": 200}])

    with pytest.raises(httpx.ReadTimeout):
        client.post(agents.url("a"), json=SIGNAL, timeout=0.2)
    second = client.post(agents.url("a"), json=SIGNAL)

    assert second.status_code == 200


def test_slow_mode_answers_ok_after_the_delay(agents: RunningAgents, client: httpx.Client) -> None:
    agents.set("a", mode="slow", delay_ms=150)

    started = time.perf_counter()
    response = client.post(agents.url("a"), json=SIGNAL)

    assert time.perf_counter() - started >= 0.15
    assert response.status_code == 200
    assert response.json()["handled"] is True


def test_hang_mode_never_answers_until_the_client_gives_up(
    agents: RunningAgents, client: httpx.Client
) -> None:
    agents.set("a", mode="hang")

    started = time.perf_counter()
    with pytest.raises(httpx.ReadTimeout):
        client.post(agents.url("a"), json=SIGNAL, timeout=0.2)

    assert time.perf_counter() - started < 2
    assert len(agents.received("a")) == 1


def test_drip_mode_sends_headers_then_the_body_byte_by_byte(
    agents: RunningAgents, client: httpx.Client
) -> None:
    agents.set("a", mode="drip", interval_ms=15)

    started = time.perf_counter()
    with client.stream("POST", agents.url("a"), json=SIGNAL) as response:
        headers_after = time.perf_counter() - started
        chunks = list(response.iter_raw())
    body_after = time.perf_counter() - started
    body = b"".join(chunks)

    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(body)
    assert len(chunks) > 5  # bytes arrive separately, not in one write
    assert body_after >= (len(body) - 1) * 0.015
    assert headers_after < body_after / 2
    assert httpx.Response(200, content=body).json()["log_id"] == "L-1"


def test_drip_mode_outlives_a_per_read_timeout_but_not_a_total_deadline(
    agents: RunningAgents, client: httpx.Client
) -> None:
    agents.set("a", mode="drip", interval_ms=50)

    received = b""
    with client.stream("POST", agents.url("a"), json=SIGNAL, timeout=0.5) as response:
        deadline = time.perf_counter() + 0.3
        for chunk in response.iter_raw():  # each read is well inside the 0.5 s read timeout
            received += chunk
            if time.perf_counter() > deadline:
                break  # a whole-request deadline is what catches a drip

    assert 0 < len(received) < int(response.headers["Content-Length"])


def test_non_json_mode_answers_plain_text(agents: RunningAgents, client: httpx.Client) -> None:
    agents.set("a", mode="non_json")

    response = client.post(agents.url("a"), json=SIGNAL)

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    with pytest.raises(ValueError, match="Expecting value"):
        response.json()


def test_reset_mode_drops_the_connection(agents: RunningAgents, client: httpx.Client) -> None:
    agents.set("a", mode="reset")

    with pytest.raises((httpx.NetworkError, httpx.RemoteProtocolError)):
        client.post(agents.url("a"), json=SIGNAL)

    assert len(agents.received("a")) == 1


def test_delete_state_resets_behaviour_and_receipts(
    agents: RunningAgents, client: httpx.Client
) -> None:
    agents.set("a", mode="fail", status=500, script=[{"status": 502}])
    client.post(agents.url("a"), json=SIGNAL)

    assert client.delete(f"{agents.base_url}/_state").status_code == 200

    assert agents.received("a") == []
    assert client.post(agents.url("a"), json=SIGNAL).status_code == 200


def test_health(agents: RunningAgents, client: httpx.Client) -> None:
    assert client.get(f"{agents.base_url}/health").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"mode": "explode"}',
        '{"mode": ["ok"]}',
        '{"mode": "slow", "delay": 200}',
        '{"mode": "slow", "delay_ms": -1}',
        '{"mode": "fail", "status": 200}',
        '{"mode": "fail", "status": 503, "retry_after": -1}',
        '{"mode": "ok", "status": 503}',
        '{"mode": "hang", "status": 503}',
        '{"script": {"status": 503}}',
        '{"script": [{"status": 503}, {"mode": "nap"}]}',
    ],
)
def test_invalid_control_bodies_are_rejected_with_400(
    agents: RunningAgents, client: httpx.Client, body: str
) -> None:
    agents.set("a", mode="fail", status=502)

    response = client.put(f"{agents.base_url}/_control/a", content=body)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_behaviour"
    assert client.post(agents.url("a"), json=SIGNAL).status_code == 502  # left unchanged


def test_sync_helper_raises_on_an_invalid_behaviour(agents: RunningAgents) -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        agents.set("a", mode="explode")


async def _stop_while_a_request_is_held(mode: dict[str, Any]) -> tuple[float, BaseException]:
    server = DemoAgentServer()
    await server.start()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        await http.put("/_control/a", json=mode)
        held = asyncio.create_task(http.post("/agents/a", json=SIGNAL))
        async with asyncio.timeout(5):  # wait for the condition, not for a guessed duration
            while (await http.get("/_received/a")).json()["count"] == 0:
                await asyncio.sleep(0.005)
        started = time.perf_counter()
        await server.stop()
        stop_took = time.perf_counter() - started
        outcome = await asyncio.gather(held, return_exceptions=True)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    error = outcome[0]
    assert isinstance(error, BaseException)
    return stop_took, error


@pytest.mark.parametrize(
    "mode", [{"mode": "hang"}, {"mode": "drip", "interval_ms": 10_000}], ids=["hang", "drip"]
)
def test_stop_releases_held_requests_promptly(mode: dict[str, Any]) -> None:
    stop_took, error = asyncio.run(_stop_while_a_request_is_held(mode))

    assert stop_took < 2
    assert isinstance(error, httpx.TransportError)


def test_run_in_thread_serves_on_the_port_it_reports() -> None:
    with run_in_thread() as running, httpx.Client() as http:
        assert running.port > 0
        assert running.base_url == f"http://127.0.0.1:{running.port}"
        assert running.url("x") == f"{running.base_url}/agents/x"
        assert http.get(f"{running.base_url}/health").status_code == 200
