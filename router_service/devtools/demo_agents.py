"""Demo agents: real HTTP endpoints whose behaviour tests and ``make dev`` switch at run time.

One aiohttp server hosts any number of named agents (created on first use)::

    POST   /agents/{name}     the agent itself: records the request, then behaves
    PUT    /_control/{name}   set the behaviour (below); replaces the previous one
    GET    /_received/{name}  {"items": [{"body", "headers", "received_at"}], "count"}
    GET    /_received         {"counts": {name: n}, "total": n}
    DELETE /_state            forget every agent's behaviour and receipts
    GET    /health            200

A behaviour is ``{"mode": ...}`` plus the fields of that mode:

    ok        status (2xx, default 200)        answer {"agent", "handled", "kind", "log_id"}
    fail      status (400-599, default 503),   answer an error, with ``Retry-After``
              retry_after (int >= 0 or text)   when retry_after is given
    slow      delay_ms (default 200)           answer ok after the delay
    hang                                       never answer; the client has to give up
    drip      interval_ms (default 200)        headers at once, then one body byte per interval
    non_json                                   200 text/plain
    reset                                      drop the connection (TCP RST) without answering
    task      state (default completed)        A2A only: a task in that state (completed,
                                               failed, rejected, canceled, input-required,
                                               auth-required, working)
    message                                    A2A only: a message instead of a task
    rpc_error code (default -32603)            A2A only: a JSON-RPC error inside an HTTP 200

The same agents speak A2A (JSON-RPC, 1.0 or 0.3 after the request's method) at
``POST /a2a/{name}``, with their card at ``/a2a/{name}/.well-known/agent-card.json`` (1.0), and
at ``/a2a-v03/{name}`` with the card at ``.../.well-known/agent.json`` (0.3): see
:mod:`router_service.devtools.demo_a2a`. There ``ok`` and ``slow`` complete the task.

``script`` is a list of one-shot behaviours consumed one per request before ``mode`` applies
again, e.g. ``{"script": [{"status": 503}, {"status": 503}, {"status": 200}]}``. An item (or a
body) without ``mode`` is ``fail`` when its status is 400 or more and ``ok`` otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import click
from aiohttp import web

RECORDED_HEADERS: Final = ("idempotency-key", "traceparent", "content-type")
TASK_STATES: Final = frozenset(
    {"completed", "failed", "rejected", "canceled", "input-required", "auth-required", "working"}
)
_MODES: Final[Mapping[str, frozenset[str]]] = {
    "ok": frozenset({"status"}),
    "fail": frozenset({"status", "retry_after"}),
    "slow": frozenset({"delay_ms"}),
    "hang": frozenset(),
    "drip": frozenset({"interval_ms"}),
    "non_json": frozenset(),
    "reset": frozenset(),
    "task": frozenset({"state"}),
    "message": frozenset(),
    "rpc_error": frozenset({"code"}),
}
_START_TIMEOUT_S: Final = 10.0
# Closing a connection with linger 0 sends RST: the client sees a reset, not a clean EOF.
_LINGER_RESET: Final = struct.pack("ii", 1, 0)


# --------------------------------------------------------------------------- behaviour


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What an agent does with one request."""

    mode: str = "ok"
    status: int = 200
    retry_after: int | str | None = None
    delay_ms: float = 200.0
    interval_ms: float = 200.0
    state: str = "completed"
    code: int = -32603


OK: Final = Behaviour()


def _int_in(value: Any, low: int, high: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _milliseconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def _retry_after(value: Any) -> int | str:
    if isinstance(value, str) and value.strip():
        return value  # an HTTP-date or deliberate garbage, passed through verbatim
    return _int_in(value, 0, 86_400, "retry_after")


def parse_behaviour(spec: Any) -> Behaviour:
    """One behaviour from its JSON form; ``ValueError`` says what is wrong."""
    if not isinstance(spec, dict):
        raise ValueError(f"a behaviour is a JSON object, got {spec!r}")
    status = spec.get("status")
    default_mode = "fail" if isinstance(status, int) and status >= 400 else "ok"
    mode = spec.get("mode", default_mode)
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {sorted(_MODES)}")
    unknown = set(spec) - {"mode"} - _MODES[mode]
    if unknown:
        raise ValueError(f"mode {mode!r} does not take {sorted(unknown)}")
    if mode == "ok":
        return Behaviour(mode, status=_int_in(spec.get("status", 200), 200, 299, "status"))
    if mode == "fail":
        retry_after = spec.get("retry_after")
        return Behaviour(
            mode,
            status=_int_in(spec.get("status", 503), 400, 599, "status"),
            retry_after=None if retry_after is None else _retry_after(retry_after),
        )
    if mode == "slow":
        return Behaviour(mode, delay_ms=_milliseconds(spec.get("delay_ms", 200), "delay_ms"))
    if mode == "drip":
        interval = _milliseconds(spec.get("interval_ms", 200), "interval_ms")
        return Behaviour(mode, interval_ms=interval)
    if mode == "task":
        state = spec.get("state", "completed")
        if state not in TASK_STATES:
            raise ValueError(f"state must be one of {sorted(TASK_STATES)}, got {state!r}")
        return Behaviour(mode, state=state)
    if mode == "rpc_error":
        return Behaviour(mode, code=_int_in(spec.get("code", -32603), -32768, 32767, "code"))
    return Behaviour(mode)


def parse_control(body: Any) -> tuple[Behaviour, list[Behaviour]]:
    """A ``PUT /_control`` body: the standing behaviour and the one-shot script."""
    if not isinstance(body, dict):
        raise ValueError("the control body must be a JSON object")
    spec = dict(body)
    script = spec.pop("script", [])
    if not isinstance(script, list):
        raise ValueError("script must be a list of behaviours")
    steps = []
    for index, item in enumerate(script):
        try:
            steps.append(parse_behaviour(item))
        except ValueError as exc:
            raise ValueError(f"script[{index}]: {exc}") from exc
    return parse_behaviour(spec), steps


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
    """Every agent of one app, plus the event that tells long-running handlers to give up."""

    agents: dict[str, Agent] = field(default_factory=dict)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def agent(self, name: str) -> Agent:
        if name not in self.agents:
            self.agents[name] = Agent(name)
        return self.agents[name]


BOOK: Final = web.AppKey("demo_agents_book", AgentBook)


# --------------------------------------------------------------------------- handlers


async def _pause(book: AgentBook, seconds: float) -> bool:
    """Wait ``seconds``; True when the server started stopping meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(book.stopping.wait(), timeout=seconds)
    return book.stopping.is_set()


def _drop_connection(request: web.Request) -> web.Response:
    """Close the socket with RST; the returned response is never written."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        transport.abort()
    # aiohttp swallows the ConnectionError from writing this to a closed transport.
    return web.Response(status=499)


def _ok_body(agent: Agent, body: Any) -> dict[str, Any]:
    fields = body if isinstance(body, dict) else {}
    return {
        "agent": agent.name,
        "handled": True,
        "kind": fields.get("kind"),
        "log_id": fields.get("log_id"),
    }


def _record(agent: Agent, request: web.Request, raw: bytes) -> Any:
    try:
        body: Any = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", errors="replace")
    headers = {name: request.headers.get(name) for name in RECORDED_HEADERS}
    if "a2a-version" in request.headers:  # A2A requests only, so plain receipts keep their shape
        headers["a2a-version"] = request.headers["a2a-version"]
    agent.received.append({"body": body, "headers": headers, "received_at": time.time()})
    return body


async def _announce(agent: Agent) -> None:
    async with agent.arrived:
        agent.arrived.notify_all()


async def _drip(
    request: web.Request, book: AgentBook, payload: bytes, interval_s: float
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(payload)
    try:
        await response.prepare(request)
        for index in range(len(payload)):
            if index and await _pause(book, interval_s):
                return _drop_connection(request)
            await response.write(payload[index : index + 1])
        await response.write_eof()
    except ConnectionError:
        pass  # the client gave up mid-drip, which is what drip exists to provoke
    return response


def _failure(agent: Agent, behaviour: Behaviour) -> web.Response:
    headers = {}
    if behaviour.retry_after is not None:
        headers["Retry-After"] = str(behaviour.retry_after)
    error = {"agent": agent.name, "handled": False, "error": f"scripted {behaviour.status}"}
    return web.json_response(error, status=behaviour.status, headers=headers)


async def agent_handler(request: web.Request) -> web.StreamResponse:
    book = request.app[BOOK]
    agent = book.agent(request.match_info["name"])
    # The behaviour is taken before any await so scripts are consumed in arrival order.
    behaviour = agent.next_behaviour()
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
        return web.Response(text=f"agent {agent.name} says hello", content_type="text/plain")
    answer = _ok_body(agent, body)
    if mode == "drip":
        payload = json.dumps(answer, separators=(",", ":")).encode()
        return await _drip(request, book, payload, behaviour.interval_ms / 1000)
    if mode == "slow":
        await _pause(book, behaviour.delay_ms / 1000)
    if behaviour.status == 204:
        return web.Response(status=204)
    return web.json_response(answer, status=behaviour.status)


async def control_handler(request: web.Request) -> web.Response:
    try:
        behaviour, script = parse_control(json.loads(await request.read()))
    except ValueError as exc:
        return web.json_response({"error": "invalid_behaviour", "detail": str(exc)}, status=400)
    agent = request.app[BOOK].agent(request.match_info["name"])
    agent.behaviour = behaviour
    agent.script = deque(script)
    return web.json_response({"agent": agent.name, "mode": behaviour.mode, "script": len(script)})


async def received_handler(request: web.Request) -> web.Response:
    """``?wait_for=N&timeout_ms=T`` holds the answer until N requests arrived (or T passed)."""
    agent = request.app[BOOK].agent(request.match_info["name"])
    try:
        wait_for = int(request.query.get("wait_for", "0"))
        timeout_s = float(request.query.get("timeout_ms", "5000")) / 1000
    except ValueError:
        return web.json_response({"error": "wait_for and timeout_ms must be numbers"}, status=400)
    if wait_for:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s), agent.arrived:
                await agent.arrived.wait_for(lambda: len(agent.received) >= wait_for)
    items = agent.received
    return web.json_response({"items": items, "count": len(items)})


async def counts_handler(request: web.Request) -> web.Response:
    counts = {name: len(agent.received) for name, agent in request.app[BOOK].agents.items()}
    return web.json_response({"counts": counts, "total": sum(counts.values())})


async def reset_handler(request: web.Request) -> web.Response:
    request.app[BOOK].agents.clear()
    return web.json_response({"reset": True})


async def health_handler(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _release_waiters(app: web.Application) -> None:
    # Runs before aiohttp waits for in-flight handlers: hang/slow/drip must not hold up stop.
    app[BOOK].stopping.set()


def create_app() -> web.Application:
    """The demo-agent server as an aiohttp application (state lives on the app)."""
    app = web.Application()
    app[BOOK] = AgentBook()
    app.on_shutdown.append(_release_waiters)
    app.router.add_post("/agents/{name}", agent_handler)
    app.router.add_put("/_control/{name}", control_handler)
    app.router.add_get("/_received/{name}", received_handler)
    app.router.add_get("/_received", counts_handler)
    app.router.add_delete("/_state", reset_handler)
    app.router.add_get("/health", health_handler)
    from router_service.devtools.demo_a2a import add_a2a_routes  # it imports this module

    add_a2a_routes(app)
    return app


# --------------------------------------------------------------------------- servers


def _http_base(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class DemoAgentServer:
    """The app on a TCP port inside the current event loop."""

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        # handler_cancellation: a hung handler ends when its client disconnects.
        runner = web.AppRunner(create_app(), handler_cancellation=True, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner, self._host = runner, host
        self._port = int(runner.addresses[0][1])

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the demo agent server is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return _http_base(self._host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner, self._port = self._runner, None, None
            await runner.cleanup()


class RunningAgents:
    """A demo-agent server on its own event loop in a daemon thread, with a sync client."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._ready = threading.Event()
        self._server = DemoAgentServer()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.port = 0
        self.base_url = ""
        # The coroutine is made inside the thread: one made here and never run would warn.
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._serve(host, port)), name="demo-agents", daemon=True
        )

    async def _serve(self, host: str, port: int) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            await self._server.start(host, port)
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self._server.stop()

    def start(self) -> RunningAgents:
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_S):
            raise RuntimeError("the demo agent server did not start in time")
        if self._error is not None:
            raise RuntimeError("the demo agent server failed to start") from self._error
        self.port = self._server.port
        self.base_url = self._server.base_url
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            # The loop may close between the check and the call when the thread is exiting.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(_START_TIMEOUT_S)

    def __enter__(self) -> RunningAgents:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def url(self, name: str) -> str:
        return f"{self.base_url}/agents/{name}"

    def a2a_url(self, name: str, version: str = "1.0") -> str:
        return f"{self.base_url}/{'a2a' if version == '1.0' else 'a2a-v03'}/{name}"

    def set(self, name: str, **behaviour: Any) -> None:
        """Set ``name``'s behaviour, e.g. ``set("a", mode="fail", status=503)``."""
        self._call("PUT", f"/_control/{name}", behaviour)

    def received(self, name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._call("GET", f"/_received/{name}")["items"]
        return items

    def wait_received(self, name: str, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Block until ``name`` has received ``count`` requests; raise if it has not in time."""
        query = f"?wait_for={count}&timeout_ms={int(timeout_s * 1000)}"
        items: list[dict[str, Any]] = self._call("GET", f"/_received/{name}{query}")["items"]
        if len(items) < count:
            raise AssertionError(f"{name} received {len(items)} requests, expected {count}")
        return items

    def reset(self) -> None:
        self._call("DELETE", "/_state")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - always our own http:// base_url
            self.base_url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=_START_TIMEOUT_S) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                detail = exc.read().decode("utf-8", errors="replace")
            raise ValueError(f"{method} {path} failed with {exc.code}: {detail}") from None


def run_in_thread(host: str = "127.0.0.1", port: int = 0) -> RunningAgents:
    """Start demo agents in a daemon thread and return once they are listening."""
    return RunningAgents(host, port).start()


# --------------------------------------------------------------------------- command


async def _serve_until_signalled(host: str, port: int) -> None:
    server = DemoAgentServer()
    await server.start(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    click.echo(f"demo agents listening on {server.base_url} (POST {server.base_url}/agents/NAME)")
    try:
        await stop.wait()
    finally:
        await server.stop()


@click.command("demo-agents")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=9100, show_default=True, type=int, help="TCP port.")
def demo_agents_command(host: str, port: int) -> None:
    """Run demo agents until SIGINT/SIGTERM. Any name is an agent: POST /agents/NAME, and
    as an A2A agent at /a2a/NAME (1.0) or /a2a-v03/NAME (0.3), each with its agent card.

    \b
    Set an agent's behaviour: PUT /_control/NAME with {"mode": MODE, ...}
      ok         answer 200 (or "status": 2xx)
      fail       answer "status" (400-599, default 503), "retry_after" optional
      slow       answer ok after "delay_ms" (default 200)
      hang       never answer
      drip       headers at once, then one body byte every "interval_ms" (default 200)
      non_json   answer 200 text/plain
      reset      drop the connection (TCP RST)
      task       A2A: answer a task in "state" (completed, failed, input-required, ...)
      message    A2A: answer a message
      rpc_error  A2A: a JSON-RPC error "code" inside an HTTP 200
    One-shot answers first: {"script": [{"status": 503}, {"status": 200}]}.
    GET /_received/NAME: what NAME received. DELETE /_state: forget everything.
    """
    asyncio.run(_serve_until_signalled(host, port))
