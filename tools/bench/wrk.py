"""Closed loop with wrk: C connections, each sending its next request when the last is answered.

wrk runs one thread pinned to the load CPU; ``post.lua`` sends a unique JSON body per request
and its ``done`` function prints one ``BENCH_JSON {...}`` line, parsed here.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.targets import LOAD_CPU, RequestSpec, pinned

SCRIPT = Path(__file__).with_name("post.lua")
MARKER = "BENCH_JSON "


class WrkError(RuntimeError):
    """wrk failed or printed no summary."""


@dataclass(frozen=True, slots=True)
class WrkResult:
    connections: int
    duration_s: float
    requests: int  # answers received (any status)
    sent: int  # requests written, including those still in flight when wrk stopped
    ok: int  # 2xx answers
    non2xx: int
    duplicates: int  # 2xx answers flagged "duplicate": true by the router
    socket_errors: int  # connect, read, write errors and timeouts
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float

    @property
    def throughput_rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    @property
    def unanswered(self) -> int:
        """Sent but not answered: in flight at the stop, or lost to a socket error."""
        return max(0, self.sent - self.ok - self.non2xx)


def parse(output: str, connections: int) -> WrkResult:
    line = next((x for x in output.splitlines() if x.startswith(MARKER)), None)
    if line is None:
        raise WrkError(f"no summary in wrk output: {output.strip()[-300:]}")
    data = json.loads(line[len(MARKER) :])
    errors = sum(data[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    return WrkResult(
        connections=connections,
        duration_s=data["duration_us"] / 1e6,
        requests=data["requests"],
        sent=data["sent"],
        ok=data["ok"],
        non2xx=data["non2xx"],
        duplicates=data["duplicates"],
        socket_errors=errors,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        mean_ms=data["mean_us"] / 1000,
        max_ms=data["max_us"] / 1000,
    )


def run_wrk(base_url: str, spec: RequestSpec, connections: int, duration_s: int) -> WrkResult:
    """One closed-loop run of ``duration_s`` whole seconds against ``base_url + spec.path``."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise WrkError("wrk not found")
    env = {
        **os.environ,
        "BENCH_PATH": spec.path,
        "BENCH_BODY": spec.body,
        "BENCH_HEADERS": "\n".join(f"{name}: {value}" for name, value in spec.headers),
        "BENCH_RUN": secrets.token_hex(4),
    }
    args = [
        *(wrk, "-t1", f"-c{connections}", f"-d{max(1, duration_s)}s", "--timeout", "10s"),
        *("-s", str(SCRIPT), base_url + spec.path),
    ]
    done = subprocess.run(
        pinned(args, LOAD_CPU),
        env=env,
        capture_output=True,
        text=True,
        timeout=duration_s + 60,
        check=False,
    )
    if done.returncode != 0:
        raise WrkError(f"wrk exited with {done.returncode}: {done.stderr.strip()[-300:]}")
    return parse(done.stdout, connections)
