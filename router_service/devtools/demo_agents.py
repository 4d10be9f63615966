"""Demo agents: real HTTP endpoints whose behaviour tests and ``make dev`` switch at run time.

One server (Starlette on uvicorn) hosts any number of named agents, created on first use::

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

The modes are parsed in :mod:`~router_service.devtools.demo_modes`, the plain endpoints answered
in :mod:`~router_service.devtools.demo_http`; this module serves both faces and is the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any, Final

import click
import uvicorn
from starlette.applications import Starlette

from router_service.devtools.demo_a2a import a2a_routes
from router_service.devtools.demo_http import AgentBook, http_routes

_START_TIMEOUT_S: Final = 10.0
# As the demo agents kept idle connections before (aiohttp's server default): longer than any
# client's idle timeout, so a client never reuses a connection the agents just closed.
_KEEP_ALIVE_S: Final = 75
_BACKLOG: Final = 1024


def create_app(book: AgentBook | None = None) -> Starlette:
    """Both faces of the demo agents as one Starlette app; their state is ``app.state.book``."""
    app = Starlette(routes=[*http_routes(), *a2a_routes()])
    app.state.book = book if book is not None else AgentBook()
    return app


# --------------------------------------------------------------------------- servers


def _http_base(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket: a busy port fails here, in ``start``, not later in the server."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: whoever runs the demo agents stops them (``stop``),
    so they run as well in a thread or beside a test's own handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _started(server: uvicorn.Server, serving: asyncio.Task[None]) -> None:
    """Return once uvicorn serves (a few loop turns after its task starts), or raise its error."""
    async with asyncio.timeout(_START_TIMEOUT_S):
        while not server.started:
            if serving.done():
                serving.result()
                raise RuntimeError("the demo agent server stopped while starting")
            await asyncio.sleep(0.005)


class DemoAgentServer:
    """The demo agents on a TCP port, served by uvicorn inside the current event loop."""

    def __init__(self) -> None:
        self._server: _Server | None = None
        self._serving: asyncio.Task[None] | None = None
        self._book: AgentBook | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        sock = _listen(host, port)
        book = AgentBook()
        config = uvicorn.Config(
            create_app(book),
            lifespan="off",
            ws="none",
            proxy_headers=False,
            access_log=False,
            log_config=None,  # leave the process's logging alone
            log_level=None,
            timeout_keep_alive=_KEEP_ALIVE_S,
            timeout_graceful_shutdown=int(_START_TIMEOUT_S),
        )
        server = _Server(config)
        # The open connections, where a reset finds the socket of its request.
        book.connections = server.server_state.connections
        serving = asyncio.create_task(server.serve(sockets=[sock]), name="demo-agents")
        try:
            await _started(server, serving)
        except BaseException:
            serving.cancel()
            sock.close()
            raise
        self._server, self._serving, self._book = server, serving, book
        self._host, self._port = host, int(sock.getsockname()[1])

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the demo agent server is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return _http_base(self._host, self.port)

    async def stop(self) -> None:
        if self._server is None or self._serving is None or self._book is None:
            return
        server, serving, book = self._server, self._serving, self._book
        self._server = self._serving = self._book = self._port = None
        # Held answers (hang, slow, drip) give up first, so they do not hold up the stop.
        book.stopping.set()
        server.should_exit = True
        await serving


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
