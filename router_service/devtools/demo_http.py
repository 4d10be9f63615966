"""The demo agents' plain HTTP face, and what both faces share: the book of agents, receipts,
held answers and dropped connections. Starlette handlers; ``demo_agents`` serves them.

    POST   /agents/{name}     the agent itself: records the request, then behaves
    PUT    /_control/{name}   set the behaviour (``demo_modes``); replaces the previous one
    GET    /_received/{name}  {"items": [{"body", "headers", "received_at"}], "count"}
    GET    /_received         {"counts": {name: n}, "total": n}
    DELETE /_state            forget every agent's behaviour and receipts
    GET    /health            200
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from router_service.devtools.demo_modes import OK, Behaviour, parse_control

RECORDED_HEADERS: Final = ("idempotency-key", "traceparent", "content-type")
# JSON as the demo agents have always written it: json.dumps, UTF-8 declared.
_JSON: Final = "application/json; charset=utf-8"
# Closing a connection with linger 0 sends RST: the client sees a reset, not a clean EOF.
_LINGER_RESET: Final = struct.pack("ii", 1, 0)


# --------------------------------------------------------------------------- state


@dataclass(slots=True)
class Agent:
    """One named agent: its standing behaviour, its pending script and what it received."""

    name: str
    behaviour: Behaviour = OK
    script: deque[Behaviour] = field(default_factory=deque)
    received: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def next_behaviour(self) -> Behaviour:
        return self.script.popleft() if self.script else self.behaviour


@dataclass(slots=True)
class AgentBook:
    """Every agent of one server, the event that tells held answers to give up, and the server's
    open connections (uvicorn's, each with its ``client`` address and its ``transport``), where
    a reset finds the socket of a request."""

    agents: dict[str, Agent] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    connections: Iterable[Any] = ()

    def agent(self, name: str) -> Agent:
        if name not in self.agents:
            self.agents[name] = Agent(name)
        return self.agents[name]


def book_of(request: Request) -> AgentBook:
    book: AgentBook = request.app.state.book
    return book


# --------------------------------------------------------------------------- answers


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(json.dumps(data), status_code=status, headers=headers, media_type=_JSON)


async def _client_gone(request: Request) -> None:
    """Return once the client has gone: the body is read, so nothing else can arrive."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def hold(book: AgentBook, request: Request, seconds: float | None = None) -> bool:
    """Wait ``seconds`` (None: for ever); True, early, when the server starts stopping or the
    client goes away (nobody is left to answer)."""
    ends = [
        asyncio.ensure_future(book.stopping.wait()),
        asyncio.ensure_future(_client_gone(request)),
    ]
    try:
        done, _ = await asyncio.wait(ends, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for end in ends:
            end.cancel()
    return bool(done)


class _Unanswered(Response):
    """What a handler returns once it dropped the connection: nothing is sent."""

    def __init__(self) -> None:
        super().__init__(status_code=499)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return None


async def drop_connection(book: AgentBook, request: Request) -> None:
    """Close the request's socket with RST, then wait until the server has seen it go (so it
    does not answer an error in the handler's place)."""
    client = request.scope.get("client")
    for connection in book.connections:
        if connection.client == client:
            transport = connection.transport
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
            transport.abort()
            break
    await _client_gone(request)


async def dropped(book: AgentBook, request: Request) -> Response:
    await drop_connection(book, request)
    return _Unanswered()


class _Drip(Response):
    """Headers at once, with the whole ``Content-Length``; then one body byte per interval."""

    def __init__(self, book: AgentBook, request: Request, payload: bytes, interval_s: float):
        headers = {"Content-Length": str(len(payload))}
        super().__init__(status_code=200, headers=headers, media_type="application/json")
        self._book, self._request = book, request
        self._payload, self._interval_s = payload, interval_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        payload = self._payload
        for index in range(len(payload)):
            if index and await hold(self._book, self._request, self._interval_s):
                await drop_connection(self._book, self._request)
                return
            chunk = payload[index : index + 1]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def ok_body(agent: Agent, body: Any) -> dict[str, Any]:
    fields = body if isinstance(body, dict) else {}
    return {
        "agent": agent.name,
        "handled": True,
        "kind": fields.get("kind"),
        "log_id": fields.get("log_id"),
    }


def failure(agent: Agent, behaviour: Behaviour) -> Response:
    headers = {}
    if behaviour.retry_after is not None:
        headers["Retry-After"] = str(behaviour.retry_after)
    error = {"agent": agent.name, "handled": False, "error": f"scripted {behaviour.status}"}
    return json_response(error, status=behaviour.status, headers=headers)


async def receive_request(agent: Agent, request: Request) -> Any:
    """Record the request (body and headers) for ``/_received`` and wake whoever waits for it;
    return its body, parsed when it is JSON."""
    raw = await request.body()
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", errors="replace")
    headers = {name: request.headers.get(name) for name in RECORDED_HEADERS}
    if "a2a-version" in request.headers:  # A2A requests only, so plain receipts keep their shape
        headers["a2a-version"] = request.headers["a2a-version"]
    agent.received.append({"body": body, "headers": headers, "received_at": time.time()})
    async with agent.arrived:
        agent.arrived.notify_all()
    return body


# --------------------------------------------------------------------------- handlers


async def failing_mode(
    book: AgentBook, agent: Agent, behaviour: Behaviour, request: Request, not_json: str
) -> Response | None:
    """The modes both faces (plain HTTP and A2A) play alike: ``fail``, ``hang``, ``reset`` and
    ``non_json`` (answered with ``not_json``). None: the face answers for itself."""
    mode = behaviour.mode
    if mode == "fail":
        return failure(agent, behaviour)
    if mode == "hang":
        await hold(book, request)
        return await dropped(book, request)
    if mode == "reset":
        return await dropped(book, request)
    if mode == "non_json":
        return PlainTextResponse(not_json)
    return None


async def agent_handler(request: Request) -> Response:
    book = book_of(request)
    agent = book.agent(request.path_params["name"])
    # The behaviour is taken before any await so scripts are consumed in arrival order.
    behaviour = agent.next_behaviour()
    body = await receive_request(agent, request)
    mode = behaviour.mode
    failed = await failing_mode(book, agent, behaviour, request, f"agent {agent.name} says hello")
    if failed is not None:
        return failed
    answer = ok_body(agent, body)
    if mode == "drip":
        payload = json.dumps(answer, separators=(",", ":")).encode()
        return _Drip(book, request, payload, behaviour.interval_ms / 1000)
    if mode == "slow":
        await hold(book, request, behaviour.delay_ms / 1000)
    if behaviour.status == 204:
        return Response(status_code=204)
    return json_response(answer, status=behaviour.status)


async def control_handler(request: Request) -> Response:
    try:
        behaviour, script = parse_control(json.loads(await request.body()))
    except ValueError as exc:
        return json_response({"error": "invalid_behaviour", "detail": str(exc)}, status=400)
    agent = book_of(request).agent(request.path_params["name"])
    agent.behaviour = behaviour
    agent.script = deque(script)
    return json_response({"agent": agent.name, "mode": behaviour.mode, "script": len(script)})


async def received_handler(request: Request) -> Response:
    """``?wait_for=N&timeout_ms=T`` holds the answer until N requests arrived (or T passed)."""
    agent = book_of(request).agent(request.path_params["name"])
    try:
        wait_for = int(request.query_params.get("wait_for", "0"))
        timeout_s = float(request.query_params.get("timeout_ms", "5000")) / 1000
    except ValueError:
        return json_response({"error": "wait_for and timeout_ms must be numbers"}, status=400)
    if wait_for:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s), agent.arrived:
                await agent.arrived.wait_for(lambda: len(agent.received) >= wait_for)
    items = agent.received
    return json_response({"items": items, "count": len(items)})


async def counts_handler(request: Request) -> Response:
    counts = {name: len(agent.received) for name, agent in book_of(request).agents.items()}
    return json_response({"counts": counts, "total": sum(counts.values())})


async def reset_handler(request: Request) -> Response:
    book_of(request).agents.clear()
    return json_response({"reset": True})


async def health_handler(request: Request) -> Response:
    return json_response({"status": "ok"})


def http_routes() -> list[Route]:
    return [
        Route("/agents/{name}", agent_handler, methods=["POST"]),
        Route("/_control/{name}", control_handler, methods=["PUT"]),
        Route("/_received/{name}", received_handler, methods=["GET"]),
        Route("/_received", counts_handler, methods=["GET"]),
        Route("/_state", reset_handler, methods=["DELETE"]),
        Route("/health", health_handler, methods=["GET"]),
    ]
