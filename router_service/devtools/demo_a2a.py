"""The demo agents' A2A face: JSON-RPC ``SendMessage`` (1.0) and ``message/send`` (0.3).

Each named demo agent also answers A2A requests; its behaviour (``PUT /_control/{name}``) picks
the answer: ``ok``/``slow`` a completed task, ``task`` a task in the given state, ``message`` a
message, ``rpc_error`` a JSON-RPC error inside an HTTP 200; ``fail``, ``hang``, ``reset``,
``drip`` and ``non_json`` behave as at the plain HTTP endpoint. The answer speaks the version of
the request (its method name).
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from router_service.devtools.demo_http import (
    Agent,
    book_of,
    failing_mode,
    hold,
    json_response,
    receive_request,
)
from router_service.devtools.demo_modes import Behaviour

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


def _rpc(request_id: Any, **outcome: Any) -> Response:
    return json_response({"jsonrpc": "2.0", "id": request_id, **outcome})


def _answer(agent: Agent, behaviour: Behaviour, body: Any) -> Response:
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


async def a2a_handler(request: Request) -> Response:
    book = book_of(request)
    agent = book.agent(request.path_params["name"])
    behaviour = agent.next_behaviour()  # before any await: scripts run in arrival order
    body = await receive_request(agent, request)
    mode = behaviour.mode
    failed = await failing_mode(book, agent, behaviour, request, "not JSON-RPC")
    if failed is not None:
        return failed
    if mode == "slow":
        await hold(book, request, behaviour.delay_ms / 1000)
    return _answer(agent, behaviour, body)


def _card(request: Request, version: str) -> Response:
    name = request.path_params["name"]
    prefix = "a2a" if version == "1.0" else "a2a-v03"
    url = f"{request.url.scheme}://{request.url.netloc}/{prefix}/{name}"
    card: dict[str, Any] = {"name": name, "description": f"demo agent {name}", "version": "1"}
    if version == "1.0":
        card["supportedInterfaces"] = [
            {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        ]
    else:
        card.update(url=url, preferredTransport="JSONRPC", protocolVersion="0.3.0")
    return json_response(card)


async def card_v1_handler(request: Request) -> Response:
    return _card(request, "1.0")


async def card_v03_handler(request: Request) -> Response:
    return _card(request, "0.3")


def a2a_routes() -> list[Route]:
    return [
        Route("/a2a/{name}", a2a_handler, methods=["POST"]),
        Route("/a2a-v03/{name}", a2a_handler, methods=["POST"]),
        Route("/a2a/{name}/.well-known/agent-card.json", card_v1_handler, methods=["GET"]),
        Route("/a2a-v03/{name}/.well-known/agent.json", card_v03_handler, methods=["GET"]),
    ]
