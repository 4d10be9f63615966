"""What a misbehaving agent's answer must not do to a signal, on both backends, with a router
served over real HTTP to a raw agent (and a healthy demo agent beside it): an unreadable
``Retry-After`` must not take the other agents' results with it, and a NUL in text an A2A agent
controls must not leave the signal in flight (Postgres refuses NUL in text)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from router_service.devtools.demo_agents import RunningAgents
from tests.support.raw_agent import RawAgent, Received, response
from tests.support.routing_files import agent, by_route, routing_text

OVERFLOWING_DATE = "Mon, 01 Jan 99999999999 00:00:00 GMT"  # OverflowError in the date parser


async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
    path = received.request_line.split(" ")[1]
    if path == "/overflow":
        writer.write(response(503, b"{}", headers={"Retry-After": OVERFLOWING_DATE}))
    else:
        request_id = orjson.loads(received.body)["id"]
        if path == "/a2a/nul-error":
            rpc = {"error": {"code": -32000, "message": "bad\u0000thing"}}
        else:
            state = {"state": "TASK_STATE_INPUT_REQUIRED"}
            rpc = {"result": {"task": {"id": "t\u00001", "contextId": "c1", "status": state}}}
        writer.write(response(200, orjson.dumps({"jsonrpc": "2.0", "id": request_id, **rpc})))
    await writer.drain()
    return True


@pytest.fixture(scope="module")
def raw_agent() -> Iterator[RawAgent]:
    with RawAgent(answer) as running:
        yield running


@pytest.fixture(scope="module")
def routing_file(
    tmp_path_factory: pytest.TempPathFactory, agents: RunningAgents, raw_agent: RawAgent
) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "routing.yaml"
    path.write_text(
        routing_text(
            [
                agent("alpha", agents.url("alpha")),
                agent("overflow", raw_agent.url("/overflow")),
                agent("nul-error", raw_agent.url("/a2a/nul-error"), protocol="a2a"),
                agent("nul-task", raw_agent.url("/a2a/nul-task"), protocol="a2a"),
            ],
            {
                "mixed": {"agents": ["alpha", "overflow"], "mode": "aggregate"},
                "nul-error": {"agents": ["nul-error"]},
                "nul-task": {"agents": ["nul-task"]},
                "default": {"agents": ["alpha"]},
            },
            [by_route(route) for route in ("mixed", "nul-error", "nul-task")],
        )
    )
    return path


def send(client: httpx.Client, route: str) -> httpx.Response:
    return client.post("/route", json={"sender_id": "hostile", "payload": {"route": route}})


def dead_letters_of(client: httpx.Client, log_id: str) -> list[dict[str, object]]:
    items = client.get("/dlq", params={"limit": 500}).json()["items"]
    return [e for e in items if e["log_id"] == log_id]


def test_an_overflowing_retry_after_date_is_ignored_and_the_healthy_agent_keeps_its_result(
    client: httpx.Client, agents: RunningAgents, raw_agent: RawAgent
) -> None:
    sent_before = len(raw_agent.requests)
    answered = send(client, "mixed")
    assert answered.status_code == 200
    body = answered.json()
    assert body["status"] == "partial"
    alpha, overflow = body["results"]
    assert (alpha["agent"], alpha["ok"], alpha["attempts"]) == ("alpha", True, 1)
    assert (overflow["agent"], overflow["ok"]) == ("overflow", False)
    assert (overflow["status_code"], overflow["error"]) == (503, "HTTP 503")  # retried as a 503
    assert overflow["attempts"] == len(raw_agent.requests) - sent_before
    assert body["response"]["alpha"]["agent"] == "alpha"
    assert len(agents.received("alpha")) == 1
    # Only the failed agent is parked: replaying would not call alpha a second time.
    [letter] = dead_letters_of(client, body["log_id"])
    assert letter["agent"] == "overflow"
    assert client.get(f"/logs/{body['log_id']}").json()["status"] == "partial"


@pytest.mark.parametrize(
    ("route", "stored"),
    [
        ("nul-error", "JSON-RPC error -32000: bad\ufffdthing"),
        ("nul-task", "needs_input: A2A task input-required (taskId=t\ufffd1, contextId=c1)"),
    ],
)
def test_a_nul_in_an_a2a_agents_text_is_stored_as_u_fffd_and_the_signal_finishes(
    client: httpx.Client, route: str, stored: str
) -> None:
    answered = send(client, route)
    assert answered.status_code == 202
    body = answered.json()
    assert body["status"] == "dead_lettered"
    [result] = body["results"]
    assert result["ok"] is False
    assert result.get("status") == ("needs_input" if route == "nul-task" else None)
    log = client.get(f"/logs/{body['log_id']}").json()
    assert log["status"] == "dead_lettered"  # recorded, not left in flight for the sweeper
    [letter] = dead_letters_of(client, body["log_id"])
    assert letter["error"] == f"{route}: {stored}"
