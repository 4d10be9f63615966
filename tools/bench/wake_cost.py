"""What a message to another process costs its sender on this machine, on the same core and on
the other one: ``python -m bench.wake_cost``, and a row of every report's machine table.

Every signal is a few round trips to other processes (the claim and the outcome to Postgres, the
dispatch to the agent, the answer to the client), and the router's CPU per signal holds what the
kernel and the hypervisor charge it for each. On a virtual machine whose idle vCPUs halt, the
message that wakes a halted vCPU costs its sender a hypervisor exit; nested virtualization makes
that exit dear. A ping-pong measures it: 100-byte messages over loopback TCP, the sender pinned
to ``TARGET_CPU`` (where the router runs), the echo pinned to the same CPU or to ``LOAD_CPU``;
the sender's CPU (``time.process_time``: user and system) and the wall time per round trip,
best of three rounds. The figures are the machine's, not the router's: they tell two machines
apart the way ``cpu_speed`` does.

The probe runs in a child process of its own (it forks the echo, and a fork is only safe from a
process with one thread).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass

from bench.targets import LOAD_CPU, ROOT, TARGET_CPU

MESSAGE = b"x" * 100
ROUND_TRIPS = 4000
ROUNDS = 3


@dataclass(frozen=True, slots=True)
class RoundTrip:
    cpu_us: float  # the sender's user + system CPU per round trip
    wall_us: float


@dataclass(frozen=True, slots=True)
class WakeCost:
    same_core: RoundTrip
    other_core: RoundTrip | None  # None on a machine with one CPU

    def text(self) -> str:
        same = self.same_core
        if self.other_core is None:
            return f"{same.cpu_us:.1f} µs of the sender's CPU per round trip (one CPU)"
        other = self.other_core
        return (
            f"{same.cpu_us:.1f} µs of the sender's CPU per round trip to a process on the same "
            f"core, {other.cpu_us:.1f} µs on the other core (wall {same.wall_us:.0f} / "
            f"{other.wall_us:.0f} µs)"
        )


# --------------------------------------------------------------------------- child


def _echo(listener: socket.socket, cpu: int) -> None:
    """The forked echo: answers until the sender closes, then leaves the process whatever
    happened (it must never return into the sender's code)."""
    status = 1
    try:
        os.sched_setaffinity(0, {cpu})
        conn, _ = listener.accept()
        while data := conn.recv(4096):
            conn.sendall(data)
        status = 0
    finally:
        os._exit(status)


def _round_trips(conn: socket.socket, count: int) -> RoundTrip:
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(count):
        conn.sendall(MESSAGE)
        received = 0
        while received < len(MESSAGE):
            received += len(conn.recv(4096))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return RoundTrip(cpu / count * 1e6, wall / count * 1e6)


def measure(sender_cpu: int, echo_cpu: int, count: int = ROUND_TRIPS) -> RoundTrip:
    """``count`` round trips from ``sender_cpu`` to an echo on ``echo_cpu``; best of ``ROUNDS``
    by the sender's CPU."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        echo = os.fork()
        if echo == 0:  # pragma: no cover - the child leaves by os._exit
            _echo(listener, echo_cpu)
        try:
            os.sched_setaffinity(0, {sender_cpu})
            with socket.create_connection(listener.getsockname()) as conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                _round_trips(conn, count // 10)  # both sides warm
                rounds = [_round_trips(conn, count) for _ in range(ROUNDS)]
        finally:
            os.waitpid(echo, 0)
    return min(rounds, key=lambda r: r.cpu_us)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wake_cost", description=__doc__)
    parser.add_argument("--round-trips", type=int, default=ROUND_TRIPS)
    args = parser.parse_args(argv)
    allowed = os.sched_getaffinity(0)  # measuring pins this process: read it first
    sender, other = int(TARGET_CPU), int(LOAD_CPU)
    if sender not in allowed:
        sender = other = min(allowed)
    same = measure(sender, sender, args.round_trips)
    found: dict[str, object] = {"same_core": asdict(same), "other_core": None}
    if other != sender and other in allowed:
        found["other_core"] = asdict(measure(sender, other, args.round_trips))
    print(json.dumps(found))


# --------------------------------------------------------------------------- parent


def wake_cost(round_trips: int = ROUND_TRIPS) -> WakeCost:
    done = subprocess.run(
        [sys.executable, "-m", "bench.wake_cost", "--round-trips", str(round_trips)],
        cwd=ROOT / "tools",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = json.loads(done.stdout)
    other = found["other_core"]
    return WakeCost(RoundTrip(**found["same_core"]), None if other is None else RoundTrip(**other))


def wake_cost_text() -> str:
    try:
        return wake_cost().text()
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as exc:
        return f"not measured ({type(exc).__name__}: {exc})"


if __name__ == "__main__":
    main()
