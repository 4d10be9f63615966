"""The demo agents' A2A face: JSON-RPC ``SendMessage`` (1.0) and ``message/send`` (0.3).

Each named demo agent also answers A2A requests; its behaviour (``PUT /_control/{name}``) picks
the answer: ``ok``/``slow`` a completed task, ``task`` a task in the given state, ``message`` a
message, ``rpc_error`` a JSON-RPC error inside an HTTP 200; ``fail``, ``hang``, ``reset``,
``drip`` and ``non_json`` behave as at the plain HTTP endpoint. The answer speaks the version of
the request (its method name).
"""

from __future__ import annotations

import json
from typing import Any, Final

from aiohttp import web

from router_service.devtools.demo_agents import (
    BOOK,
    Agent,
    Behaviour,
    _announce,
    _drop_connection,
    _failure,
    _pause,
    _record,
)

_V1_STATES: Final = {
    "completed": "TASK_STATE_COMPLETED",
    "failed": "TASK_STATE_FAILED",
    "rejected": "TASK_STATE_REJECTED",
    "canceled": "TASK_STATE_CANCELED",
    "input-required": "TASK_STATE_INPUT_REQUIRED",
    "auth-required": "TASK_STATE_AUTH_REQUIRED",
    "working": "TASK_STATE_WORKING",
}


def _task(agent: Agent, message_id: str, state: str, v1: bool) -> dict[str, Any]:
    answer = {"agent": agent.name, "handled": state == "completed", "message_id": message_id}
    task: dict[str, Any] = {
        "id": f"task-{message_id[:16]}",
        "contextId": f"ctx-{message_id[:16]}",
        "status": {"state": _V1_STATES[state] if v1 else state},
        "artifacts": [
            {
                "artifactId": f"answer-{message_id[:16]}",
                "parts": [{"data": answer} if v1 else {"kind": "data", "data": answer}],
            }
        ],
    }
    return {"task": task} if v1 else {"kind": "task", **task}


def _message(agent: Agent, message_id: str, v1: bool) -> dict[str, Any]:
    text = f"{agent.name} handled {message_id}"
    if v1:
        parts: list[dict[str, Any]] = [{"text": text}]
        return {"message": {"role": "ROLE_AGENT", "messageId": f"re-{message_id}", "parts": parts}}
    parts = [{"kind": "text", "text": text}]
    return {"kind": "message", "role": "agent", "messageId": f"re-{message_id}", "parts": parts}


def _rpc(request_id: Any, **outcome: Any) -> web.Response:
    return web.json_response({"jsonrpc": "2.0", "id": request_id, **outcome})


def _answer(agent: Agent, behaviour: Behaviour, body: Any) -> web.Response:
    request = body if isinstance(body, dict) else {}
    request_id = request.get("id")
    method = request.get("method")
    if method not in ("SendMessage", "message/send"):
        return _rpc(request_id, error={"code": -32601, "message": f"method {method!r} not found"})
    params = request.get("params")
    message = params.get("message") if isinstance(params, dict) else None
    message_id = message.get("messageId") if isinstance(message, dict) else None
    if not isinstance(message_id, str):
        return _rpc(request_id, error={"code": -32602, "message": "messageId is required"})
    v1 = method == "SendMessage"
    if behaviour.mode == "rpc_error":
        return _rpc(request_id, error={"code": behaviour.code, "message": "scripted error"})
    if behaviour.mode == "message":
        return _rpc(request_id, result=_message(agent, message_id, v1))
    state = behaviour.state if behaviour.mode == "task" else "completed"
    return _rpc(request_id, result=_task(agent, message_id, state, v1))


async def a2a_handler(request: web.Request) -> web.StreamResponse:
    book = request.app[BOOK]
    agent = book.agent(request.match_info["name"])
    behaviour = agent.next_behaviour()  # before any await: scripts run in arrival order
    body = _record(agent, request, await request.read())
    await _announce(agent)
    mode = behaviour.mode
    if mode == "fail":
        return _failure(agent, behaviour)
    if mode == "hang":
        await book.stopping.wait()
        return _drop_connection(request)
    if mode == "reset":
        return _drop_connection(request)
    if mode == "non_json":
        return web.Response(text="not JSON-RPC", content_type="text/plain")
    if mode == "slow":
        await _pause(book, behaviour.delay_ms / 1000)
    return _answer(agent, behaviour, body)


def _card(request: web.Request, version: str) -> web.Response:
    name = request.match_info["name"]
    prefix = "a2a" if version == "1.0" else "a2a-v03"
    url = f"{request.scheme}://{request.host}/{prefix}/{name}"
    card: dict[str, Any] = {"name": name, "description": f"demo agent {name}", "version": "1"}
    if version == "1.0":
        card["supportedInterfaces"] = [
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        ]
    else:
        card.update(url=url, preferredTransport="JSONRPC", protocolVersion="0.3.0")
    return web.Response(text=json.dumps(card), content_type="application/json")


async def card_v1_handler(request: web.Request) -> web.Response:
    return _card(request, "1.0")


async def card_v03_handler(request: web.Request) -> web.Response:
    return _card(request, "0.3")


def add_a2a_routes(app: web.Application) -> None:
    app.router.add_post("/a2a/{name}", a2a_handler)
    app.router.add_post("/a2a-v03/{name}", a2a_handler)
    app.router.add_get("/a2a/{name}/.well-known/agent-card.json", card_v1_handler)
    app.router.add_get("/a2a-v03/{name}/.well-known/agent.json", card_v03_handler)
