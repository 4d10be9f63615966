"""``python -m bench.agent_client``: the agent client against aiohttp, side by side.

Both clients call the same agent: nginx answering ``{"ok":true}`` at once (one worker, started
here with its own configuration), or a small asyncio server in a child process when nginx is
missing. ``aiohttp`` is the client the router used before, configured as it was (one pooled
``ClientSession``, no User-Agent, the same capped streamed read and status mapping); ``lean`` is
``router_service.adapters.agents.HttpAgentClient``. Rounds are interleaved (aiohttp, lean, lean,
aiohttp, ...) so that drift on the machine hits both; the figures are medians over the rounds.

CPU is this process's user+system time per call, so the agent's own CPU is not counted; wall is
elapsed time per call. Sequential calls show the latency; concurrency 8 shows the CPU under load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import Path

import aiohttp
import orjson

from bench.targets import UPSTREAM_PATH, Process, Upstream, free_port
from router_service.adapters.agents import HttpAgentClient, decode_body
from router_service.domain.errors import PermanentAgentError, RetryableAgentError
from router_service.domain.retry import is_retryable_status
from router_service.domain.routing import AgentSpec
from router_service.service.ports import AgentReply

BODY = orjson.dumps({"log_id": "0" * 32, "kind": "alert", "payload": {"route": "one", "n": 1}})
HEADERS = {
    "Content-Type": "application/json",
    "Idempotency-Key": "0" * 32,
    "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
}
MAX_RESPONSE_BYTES = 1024 * 1024


class AiohttpAgentClient:
    """The previous agent client, kept here only to be measured against."""

    def __init__(self, *, max_connections: int, max_response_bytes: int) -> None:
        self._max_response_bytes = max_response_bytes
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None),
            skip_auto_headers=("User-Agent",),
            json_serialize=lambda v: orjson.dumps(v).decode(),
        )

    async def close(self) -> None:
        await self._session.close()

    async def call(self, agent, body, headers, timeout_s) -> AgentReply:
        try:
            async with asyncio.timeout(timeout_s):
                return await self._attempt(agent, body, headers)
        except TimeoutError as exc:
            raise RetryableAgentError(f"timed out after {timeout_s * 1000:.0f} ms") from exc
        except aiohttp.ClientError as exc:
            raise RetryableAgentError(f"connection error: {type(exc).__name__}") from exc

    async def _attempt(self, agent, body, headers) -> AgentReply:
        async with self._session.post(
            agent.url, data=body, headers=dict(headers), allow_redirects=False
        ) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > self._max_response_bytes:
                    raise PermanentAgentError("response too large", status_code=response.status)
                chunks.append(chunk)
            payload = decode_body(b"".join(chunks), response.headers.get("Content-Type", ""))
            status = response.status
            if 200 <= status < 300:
                return AgentReply(status, payload)
            if is_retryable_status(status):
                raise RetryableAgentError(f"HTTP {status}", status_code=status)
            raise PermanentAgentError(f"HTTP {status}", status_code=status)


Client = AiohttpAgentClient | HttpAgentClient
FACTORIES: dict[str, Callable[[], Client]] = {
    "aiohttp": lambda: AiohttpAgentClient(
        max_connections=256, max_response_bytes=MAX_RESPONSE_BYTES
    ),
    "lean": lambda: HttpAgentClient(max_connections=256, max_response_bytes=MAX_RESPONSE_BYTES),
}


async def _phase(
    client: Client, agent: AgentSpec, calls: int, concurrency: int
) -> tuple[float, float]:
    """CPU µs and wall µs per call for ``calls`` calls spread over ``concurrency`` tasks."""

    async def worker(count: int) -> None:
        for _ in range(count):
            reply = await client.call(agent, BODY, HEADERS, 5.0)
            assert reply.status_code == 200

    share, extra = divmod(calls, concurrency)
    jobs = [share + (1 if i < extra else 0) for i in range(concurrency)]
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(n) for n in jobs))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu / calls * 1e6, wall / calls * 1e6


async def measure(url: str, calls: int, rounds: int, levels: list[int]) -> dict:
    """``{(name, concurrency): [(cpu_us, wall_us), ...]}``, one pair per round."""
    agent = AgentSpec(name="bench", url=url)
    clients = {name: make() for name, make in FACTORIES.items()}
    figures: dict[tuple[str, int], list[tuple[float, float]]] = {}
    try:
        for client in clients.values():  # warm-up: connections, caches
            for level in levels:
                await _phase(client, agent, max(200, calls // 10), level)
        for index in range(rounds):
            order = list(clients) if index % 2 == 0 else list(reversed(clients))
            for level in levels:
                for name in order:
                    pair = await _phase(clients[name], agent, calls, level)
                    figures.setdefault((name, level), []).append(pair)
    finally:
        for client in clients.values():
            await client.close()
    return figures


def render(figures: Mapping[tuple[str, int], list[tuple[float, float]]], levels: list[int]) -> str:
    lines = [
        "| concurrency | client | CPU per call | wall per call |",
        "|---|---|---|---|",
    ]
    for level in levels:
        cpu: dict[str, float] = {}
        wall: dict[str, float] = {}
        for name in FACTORIES:
            pairs = figures[(name, level)]
            cpu[name] = statistics.median(p[0] for p in pairs)
            wall[name] = statistics.median(p[1] for p in pairs)
            lines.append(f"| {level} | {name} | {cpu[name]:,.0f} µs | {wall[name]:,.0f} µs |")
        lines.append(
            f"| {level} | aiohttp / lean | {cpu['aiohttp'] / cpu['lean']:.2f}x "
            f"| {wall['aiohttp'] / wall['lean']:.2f}x |"
        )
    return "\n".join(lines)


@contextlib.contextmanager
def agent_url(kind: str) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="agent-client-bench-") as tmp:
        if kind == "nginx":
            upstream = Upstream(Path(tmp))
            try:
                yield upstream.agent_url
            finally:
                upstream.stop()
            return
        port = free_port()
        args = [sys.executable, "-m", "bench.agent_client", "--serve", str(port)]
        child = Process(args, env=dict(os.environ), cwd=Path.cwd(), log=Path(tmp) / "agent.log")
        try:
            for _ in range(100):
                with contextlib.suppress(OSError), _probe(port):
                    break
                time.sleep(0.05)  # polling a child's port until it listens
            yield f"http://127.0.0.1:{port}{UPSTREAM_PATH}"
        finally:
            child.stop()


@contextlib.contextmanager
def _probe(port: int) -> Iterator[None]:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=0.2):
        yield


class _Answer(asyncio.Protocol):
    """A keep-alive HTTP/1.1 server that answers every request ``{"ok":true}`` (no parsing
    beyond the blank line: the bench client sends small bodies in one segment)."""

    REPLY = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
        b'{"ok":true}'
    )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(self.REPLY * data.count(b"\r\n\r\n"))  # type: ignore[attr-defined]


async def _serve(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Answer, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.agent_client", description=__doc__)
    parser.add_argument("--calls", type=int, default=2000, help="calls per round and client")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", default="1,8", help="comma-separated levels")
    parser.add_argument("--agent", choices=("nginx", "asyncio"), default="nginx")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    levels = [int(part) for part in args.concurrency.split(",")]
    run: Callable[[Awaitable[dict]], dict] = asyncio.run
    if args.loop == "uvloop":
        import uvloop

        run = uvloop.run
    with agent_url(args.agent) as url:
        figures = run(measure(url, args.calls, args.rounds, levels))
    print(f"{args.calls} calls per round, {args.rounds} rounds, {args.loop}, agent {args.agent}")
    print(render(figures, levels))


if __name__ == "__main__":
    main()
