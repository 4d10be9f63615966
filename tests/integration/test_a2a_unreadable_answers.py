"""A2A answers the router cannot read, on both backends, with a router served over real HTTP
to a raw agent: each is a permanent failure at once (one call: a re-send repeats the message to
an agent that may have taken it), dead-lettered with an error that names what was wrong, and
an agent's text in that error is capped (the whole answer stays in ``response``)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from router_service.adapters.a2a import MAX_ERROR_CHARS, A2aAgentClient
from router_service.adapters.agents import HttpAgentClient
from router_service.domain.errors import PermanentAgentError
from router_service.domain.routing import AgentProtocol, AgentSpec
from router_service.domain.trace import TraceContext
from tests.support.agent_calls import ENVELOPE, run
from tests.support.raw_agent import RawAgent, Received, response
from tests.support.routing_files import agent, by_route, routing_text

COMPLETED = {"task": {"id": "t1", "status": {"state": "TASK_STATE_COMPLETED"}}}
HUGE = "m" * 900_000

# Path -> the JSON-RPC members of the answer (beside ``jsonrpc`` and the request's ``id``).
TASKS: dict[str, dict[str, Any]] = {
    "no-status": {"task": {"id": "t1"}},
    "status-string": {"task": {"id": "t1", "status": "completed"}},
    "state-number": {"task": {"id": "t1", "status": {"state": 3}}},
    "unknown": {"task": {"id": "t1", "status": {"state": "TASK_STATE_UNKNOWN"}}},
    "unspecified": {"task": {"id": "t1", "status": {"state": "TASK_STATE_UNSPECIFIED"}}},
    "unknown-03": {"kind": "task", "id": "t1", "status": {"state": "unknown"}},
}
ERRORS = {
    "no-status": "unreadable A2A task: no status",
    "status-string": 'unreadable A2A task: status "completed" is not an object',
    "state-number": "unreadable A2A task: status.state 3 is not a string",
    "unknown": 'unreadable A2A task: state "TASK_STATE_UNKNOWN"',
    "unspecified": 'unreadable A2A task: state "TASK_STATE_UNSPECIFIED"',
    "unknown-03": 'unreadable A2A task: state "unknown"',
    "error-false": "not a JSON-RPC 2.0 response: error false is not an object",
    "duplicate-id": 'not a JSON-RPC 2.0 response: duplicate JSON object key "id"',
}


def path_of(received: Received) -> str:
    return received.request_line.split(" ")[1].rsplit("/", 1)[1]


def answer_bytes(path: str, request_id: str) -> bytes:
    if path == "duplicate-id":  # orjson keeps the last "id": the request's own
        result = orjson.dumps(COMPLETED).decode()
        text = f'{{"jsonrpc":"2.0","id":"wrong","id":"{request_id}","result":{result}}}'
        return text.encode()
    if path == "error-false":
        members: dict[str, Any] = {"error": False, "result": COMPLETED}
    elif path == "huge-error":
        members = {"error": {"code": -32000, "message": HUGE}}
    else:
        members = {"result": TASKS[path]}
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, **members})


async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
    request_id = orjson.loads(received.body)["id"]
    writer.write(response(200, answer_bytes(path_of(received), request_id)))
    await writer.drain()
    return True


@pytest.fixture(scope="module")
def raw_agent() -> Iterator[RawAgent]:
    with RawAgent(answer) as running:
        yield running


ROUTES = [*TASKS, "error-false", "duplicate-id", "huge-error"]


@pytest.fixture(scope="module")
def routing_file(tmp_path_factory: pytest.TempPathFactory, raw_agent: RawAgent) -> Path:
    def a2a(route: str) -> dict[str, object]:
        version = {"a2a_version": "0.3"} if route.endswith("-03") else {}
        return dict(agent(route, raw_agent.url(f"/a2a/{route}"), protocol="a2a", **version))

    path = tmp_path_factory.mktemp("unreadable") / "routing.yaml"
    path.write_text(
        routing_text(
            [a2a(route) for route in ROUTES],
            {
                **{route: {"agents": [route]} for route in ROUTES},
                "default": {"agents": ["no-status"]},
            },
            [by_route(route) for route in ROUTES],
        )
    )
    return path


def send(client: httpx.Client, route: str) -> dict[str, Any]:
    answered = client.post("/route", json={"sender_id": "hostile", "payload": {"route": route}})
    assert answered.status_code == 202
    body: dict[str, Any] = answered.json()
    assert body["status"] == "dead_lettered"
    return body


def calls(raw_agent: RawAgent, route: str) -> int:
    return sum(path_of(r) == route for r in raw_agent.requests)


def dead_letter_of(client: httpx.Client, log_id: str) -> dict[str, Any]:
    items = client.get("/dlq", params={"limit": 500}).json()["items"]
    [letter] = [e for e in items if e["log_id"] == log_id]
    return dict(letter)


@pytest.mark.parametrize("route", [*TASKS, "error-false", "duplicate-id"])
def test_an_unreadable_answer_is_dead_lettered_at_once_naming_what_was_wrong(
    client: httpx.Client, raw_agent: RawAgent, route: str
) -> None:
    before = calls(raw_agent, route)
    body = send(client, route)
    [result] = body["results"]
    assert (result["ok"], result["attempts"], result["status_code"]) == (False, 1, 200)
    assert result["error"] == ERRORS[route]
    assert calls(raw_agent, route) == before + 1  # never sent again
    assert dead_letter_of(client, body["log_id"])["error"] == f"{route}: {ERRORS[route]}"


def test_a_duplicate_key_answer_is_kept_as_its_text_not_as_orjson_read_it(
    client: httpx.Client,
) -> None:
    body = send(client, "duplicate-id")
    [result] = body["results"]
    assert result["response"] == {"text": answer_bytes("duplicate-id", body["log_id"]).decode()}


def test_a_huge_json_rpc_error_message_is_capped_in_the_error_and_kept_in_the_response(
    client: httpx.Client,
) -> None:
    body = send(client, "huge-error")
    [result] = body["results"]
    assert result["attempts"] == 1
    assert len(result["error"]) == MAX_ERROR_CHARS
    assert result["error"].startswith("JSON-RPC error -32000: mmm")
    assert result["response"]["error"]["message"] == HUGE  # the whole answer, once
    logged = client.get(f"/logs/{body['log_id']}").json()
    assert len(logged["results"][0]["error"]) == MAX_ERROR_CHARS
    letter = dead_letter_of(client, body["log_id"])
    assert len(letter["error"]) == len("huge-error: ") + MAX_ERROR_CHARS


def test_a_duplicate_key_answer_drops_its_connection() -> None:
    with RawAgent(answer) as agent:
        spec = AgentSpec("dup", agent.url("/a2a/duplicate-id"), protocol=AgentProtocol.A2A)

        async def scenario(client: HttpAgentClient) -> list[PermanentAgentError]:
            a2a = A2aAgentClient(client)
            caught = []
            for _ in range(2):
                with pytest.raises(PermanentAgentError) as info:
                    await a2a.deliver(spec, ENVELOPE, TraceContext.from_header(None), 2.0)
                caught.append(info.value)
            return caught

        errors: list[PermanentAgentError] = run(scenario)
    assert [e.message for e in errors] == [ERRORS["duplicate-id"]] * 2
    assert agent.accepts == 2  # which request it answers cannot be told: never reused
