"""``python -m bench.log_cost``: the CPU a signal's two events cost, their log lines included.

Every signal emits two events, ``agent.attempt`` and ``signal.routed``: a histogram or two, a
counter, and one JSON log line each, written to stdout as the router writes them (with the
configuration ``serve`` uses). This runs them on uvloop, a few signals per turn of the loop as
under load, and prints the process's CPU time per signal (user and system: the writes count),
best of several repeats. Pipe stdout to a reader, as a container runtime reads it::

    PYTHONUNBUFFERED=1 .venv/bin/python -m bench.log_cost | cat > /dev/null

The figures go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import uvloop

from router_service.observability.events import Telemetry
from router_service.observability.logging import bind_trace, configure_logging
from router_service.observability.metrics import Metrics
from router_service.observability.tracing import TraceContext

REPEATS = 5


async def _per_signal_us(events: Telemetry, signals: int, per_turn: int) -> float:
    trace = TraceContext.from_header(None)
    bind_trace(trace.trace_id, trace.span_id)
    span = trace.child()
    best = float("inf")
    for _ in range(REPEATS):
        started = time.process_time()
        for i in range(signals):
            events.agent_attempt(
                agent="orders", outcome="ok", status_code=200, latency_s=0.0012, attempt=1,
                span=span, error=None,
            )  # fmt: skip
            events.signal_finished(
                log_id="ab" * 32, kind="order", rule="orders", status="delivered",
                agents=["orders"], latency_s=0.0031, agent_s=0.0012, duplicate=False, trace=trace,
            )  # fmt: skip
            if i % per_turn == per_turn - 1:
                await asyncio.sleep(0)  # the loop's next turn writes the kept lines
        best = min(best, (time.process_time() - started) / signals)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.log_cost", description=__doc__)
    parser.add_argument("--signals", type=int, default=40_000, help="signals per repeat")
    parser.add_argument("--per-turn", default="1,4", help="signals per loop turn, comma-separated")
    args = parser.parse_args()
    configure_logging("INFO")
    events = Telemetry(Metrics())
    for per_turn in (int(n) for n in args.per_turn.split(",")):
        us = uvloop.run(_per_signal_us(events, args.signals, per_turn))
        print(
            f"{per_turn} signal(s) a loop turn: {us:.1f} us CPU a signal (2 events), "
            f"best of {REPEATS} x {args.signals}",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
