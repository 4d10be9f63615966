"""``python -m bench.hedge``: hedge vs first_success vs fallback against a heavy-tail agent.

Two agents answer in ``--base-ms`` (plus a little jitter), except a ``--tail`` share of answers
that take ``--tail-ms``: each call draws independently. The router's dispatcher (the real one,
over the real HTTP client, on loopback; no database, which adds the same to every mode) routes
``-n`` signals per mode at concurrency ``-c`` and the script prints p50/p99/p99.9 and the extra
agent calls per signal. Hedge is ``after: p95, max_extra: 0.05`` after a warm-up that fills the
p95 window.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from router_service.adapters.agents import HttpAgentClient
from router_service.domain.retry import RetryPolicy
from router_service.domain.routing import AgentProtocol, AgentSpec, HedgePolicy, Mode, Plan
from router_service.domain.signal import Signal
from router_service.observability.events import Telemetry
from router_service.observability.logging import configure_logging
from router_service.observability.metrics import Metrics
from router_service.observability.tracing import TraceContext
from router_service.service.dispatch import Dispatcher
from router_service.service.intake import envelope_of
from router_service.service.ports import AgentClient


@dataclass
class Tail:
    base_s: float
    tail_s: float
    share: float
    calls: int = 0


def _agent_app(tail: Tail) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        tail.calls += 1
        slow = random.random() < tail.share
        await asyncio.sleep(tail.tail_s if slow else tail.base_s * random.uniform(0.8, 1.2))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/agents/{name}", handle)
    return app


def _serve_in_thread(tail: Tail) -> int:
    """The tail agents on their own loop (as a separate server would be); returns the port."""
    ready = threading.Event()
    port: list[int] = []

    async def serve() -> None:
        runner = web.AppRunner(_agent_app(tail), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port.append(int(runner.addresses[0][1]))
        ready.set()
        await asyncio.Event().wait()

    threading.Thread(target=lambda: asyncio.run(serve()), daemon=True).start()
    ready.wait(10)
    return port[0]


async def _run_mode(
    dispatcher: Dispatcher, plan: Plan, count: int, concurrency: int, tag: str
) -> list[float]:
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            signal = Signal.create(
                sender_id="bench", payload={"i": i, "tag": tag}, timestamp=datetime.now(UTC)
            )
            started = time.perf_counter()
            results = await dispatcher.dispatch(
                plan, envelope_of(signal, "k"), TraceContext.from_header(None), started + 5.0
            )
            assert any(r.ok for r in results)
            latencies.append(time.perf_counter() - started)

    await asyncio.gather(*(one(i) for i in range(count)))
    return latencies


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main(args: argparse.Namespace) -> None:
    configure_logging("WARNING")
    tail = Tail(args.base_ms / 1000, args.tail_ms / 1000, args.tail)
    port = _serve_in_thread(tail)
    agents = tuple(AgentSpec(n, f"http://127.0.0.1:{port}/agents/{n}") for n in ("a", "b"))
    client = HttpAgentClient(max_connections=256, max_response_bytes=1 << 20)
    clients: dict[str, AgentClient] = {AgentProtocol.HTTP: client}
    print(f"agents: {args.base_ms:g} ms, {args.tail:.1%} at {args.tail_ms:g} ms; "
          f"{args.n} signals per mode at concurrency {args.c}")  # fmt: skip
    print(f"{'mode':<14}{'p50 ms':>8}{'p99 ms':>8}{'p99.9 ms':>10}{'extra calls':>13}")
    try:
        for mode in (Mode.FALLBACK, Mode.FIRST_SUCCESS, Mode.HEDGE):
            dispatcher = Dispatcher(
                clients,
                Telemetry(Metrics()),
                policy=RetryPolicy(max_attempts=1, base_s=0.01, cap_s=0.01),
                agent_timeout_s=2.0,
                fanout_concurrency=16,
                global_concurrency=256,
            )
            hedge = HedgePolicy() if mode is Mode.HEDGE else None
            plan = Plan("k", "bench", mode, agents, hedge)
            await _run_mode(dispatcher, plan, args.warmup, args.c, f"warm-{mode}")
            tail.calls = 0
            latencies = await _run_mode(dispatcher, plan, args.n, args.c, str(mode))
            extra = tail.calls / args.n - 1
            p50, p99, p999 = (_quantile(latencies, q) for q in (0.5, 0.99, 0.999))
            print(f"{mode.value:<14}{p50:>8.1f}{p99:>8.1f}{p999:>10.1f}{extra:>12.1%}")
            print(f"{'':<14}(mean {statistics.fmean(latencies) * 1000:.1f} ms)")
    finally:
        await client.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=4000, help="signals per mode")
    parser.add_argument("-c", type=int, default=8, help="signals in flight")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--base-ms", type=float, default=5.0)
    parser.add_argument("--tail-ms", type=float, default=200.0)
    parser.add_argument("--tail", type=float, default=0.01, help="share of slow answers")
    asyncio.run(main(parser.parse_args()))
