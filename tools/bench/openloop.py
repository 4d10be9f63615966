"""Open loop at a fixed rate with the project's load generator (``run_load``).

Request *i* is due at ``i / rate`` whatever the server does, and its latency runs from that
intended time, so a stalled server is not hidden by coordinated omission. The generator runs in
a child process (``python -m bench.openloop``) pinned to the load CPU, on uvloop; besides the
load generator's own report, the child prints the p50 of the requests due in the first and in
the last window (10 s by default): a server that degrades under sustained load shows there.
The intended send time of request *i* is ``i / rate``, so ``RequestOutcome.index`` is enough to
place each answer in time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.targets import LOAD_CPU, ROOT, pinned

DEFAULT_WINDOW_S = 10.0


@dataclass(frozen=True, slots=True)
class OpenLoopResult:
    rate: float
    duration_s: float  # from the first send to the last answer
    requests: int
    answered: int
    ok: int  # 2xx answers
    duplicates: int  # answers flagged "duplicate": true
    dropped: int  # due while max_outstanding were in flight: never sent
    errors: int  # timeouts and connection failures (sent, no answer)
    throughput_rps: float
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    first_p50_ms: float | None
    last_p50_ms: float | None
    window_s: float
    status_codes: dict[str, int]
    router_statuses: dict[str, int]
    # Sent and not answered, by kind (the load generator's names: a timeout, a refused or reset
    # connection, ...); their sum is ``errors``.
    error_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def drift(self) -> float | None:
        """Last-window p50 relative to the first-window p50 (0.1 = 10 % slower)."""
        if not self.first_p50_ms or self.last_p50_ms is None:
            return None
        return self.last_p50_ms / self.first_p50_ms - 1


# --------------------------------------------------------------------------- child


async def _measure(url: str, api_key: str, rate: float, duration_s: float, window_s: float) -> Any:
    from loadgen import (
        LatencySummary,
        LoadOptions,
        RequestOutcome,
        run_load,
    )

    requests = max(1, round(rate * duration_s))
    options = LoadOptions(
        url=url,
        api_key=api_key,
        requests=requests,
        concurrency=64,  # a connection limit: the rate decides how many are in use
        rate=rate,
        duplicates=0.0,  # every request is a new signal: one row per 2xx answer
        timeout_s=10.0,
    )
    latencies: dict[int, float] = {}

    def on_result(outcome: RequestOutcome) -> None:
        if outcome.latency_ms is not None:
            latencies[outcome.index] = outcome.latency_ms

    report = await run_load(options, on_result=on_result)
    edge = min(requests // 2, round(window_s * rate))
    first = LatencySummary.of([ms for i, ms in latencies.items() if i < edge])
    last = LatencySummary.of([ms for i, ms in latencies.items() if i >= requests - edge])
    data = report.to_dict()
    data["first_p50_ms"] = first.p50_ms if first else None
    data["last_p50_ms"] = last.p50_ms if last else None
    data["window_s"] = edge / rate
    return data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.openloop", description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--window", type=float, default=DEFAULT_WINDOW_S)
    args = parser.parse_args(argv)
    import uvloop

    data = uvloop.run(_measure(args.url, args.api_key, args.rate, args.duration, args.window))
    print(json.dumps(data))


# --------------------------------------------------------------------------- parent


def _result(data: dict[str, Any], rate: float) -> OpenLoopResult:
    latency = data.get("latency") or {}
    codes: dict[str, int] = data["status_codes"]
    errors: dict[str, int] = data["errors"]
    unanswered = {k: n for k, n in errors.items() if k not in {"dropped", "non_json_body"}}
    return OpenLoopResult(
        rate=rate,
        duration_s=data["duration_s"],
        requests=data["requests"],
        answered=data["answered"],
        ok=sum(n for code, n in codes.items() if code.startswith("2")),
        duplicates=data["duplicates_answered"],
        dropped=errors.get("dropped", 0),
        errors=sum(unanswered.values()),
        throughput_rps=data["throughput_rps"],
        p50_ms=latency.get("p50_ms"),
        p90_ms=latency.get("p90_ms"),
        p99_ms=latency.get("p99_ms"),
        max_ms=latency.get("max_ms"),
        first_p50_ms=data["first_p50_ms"],
        last_p50_ms=data["last_p50_ms"],
        window_s=data["window_s"],
        status_codes=codes,
        router_statuses=data["router_statuses"],
        error_kinds=unanswered,
    )


def run_open_loop(
    base_url: str,
    api_key: str,
    rate: float,
    duration_s: float,
    *,
    window_s: float = DEFAULT_WINDOW_S,
    cwd: Path = ROOT,
) -> OpenLoopResult:
    """One run in a pinned child; ``cwd`` decides which router_service it imports first."""
    args = [
        *(sys.executable, "-m", "bench.openloop", "--url", base_url, "--api-key", api_key),
        *("--rate", f"{rate:g}", "--duration", f"{duration_s:g}", "--window", f"{window_s:g}"),
    ]
    done = subprocess.run(
        pinned(args, LOAD_CPU),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=duration_s * 3 + 120,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"open loop exited with {done.returncode}: {done.stderr.strip()[-300:]}")
    return _result(json.loads(lines[-1]), rate)


if __name__ == "__main__":
    main()
