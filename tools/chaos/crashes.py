"""Crashes: a router killed mid-fan-out, Postgres stopped hard, its connections killed, and a
router told to stop (SIGTERM) with requests in flight."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from chaos.client import Signal, send_all, steady_load
from chaos.run import (
    DEADLINE_S,
    Run,
    acks_grow,
    affected_by,
    answers_grow,
    first_ack_after,
    settle_all,
)
from chaos.stack import AGENT_TIMEOUT_MS, GOOD, LEASE_S, SWEEP_INTERVAL_S

# --------------------------------------------------------------------------- 1 kill -9


async def kill_router(run: Run) -> None:
    """kill -9 a replica while an aggregate fan-out to slow agents is in flight; restart it."""
    stack = run.stack
    for name in GOOD:
        await stack.agents.set(name, mode="slow", delay_ms=800)
    await stack.start_replica("router-a")
    await stack.start_replica("router-b")
    signals = run.signals("kill", run.scale.n(24, 60), "fanout")
    pick_a, pick_b = stack.pick("router-a"), stack.pick("router-b")
    load = asyncio.create_task(
        send_all(stack.recorder, signals, lambda i: pick_b(i) if i % 3 == 0 else pick_a(i), 64)
    )
    # Mid-fan-out: half the signals reached the first agent, none can have been answered yet.
    await stack.agents.wait_received("good-a", len(signals) // 2, timeout_s=20)
    killed_at = time.time()
    stack.replicas["router-a"].proc.kill9()
    await load
    run.crash_affected = {
        a.log_id for a in stack.recorder.answers if a.target == "router-a" and a.status == 0
    }
    run.notes.append(f"{len(run.crash_affected)} signals were in flight on the killed replica")
    if not run.crash_affected:
        run.fail("fault", "the kill interrupted no request: the scenario proved nothing")
    restart_s = await stack.restart_replica(stack.replicas["router-a"])
    run.notes.append(f"restarted replica live after {restart_s:.1f} s")
    if await settle_all(run, signals, "router-a", "router-b"):
        run.recovery_s = time.time() - killed_at


# --------------------------------------------------------------------------- 1b kill -9 backlog

SWEEP_CONCURRENCY = 32  # the router's default


async def kill_backlog(run: Run) -> None:
    """kill -9 the replica holding a large backlog of signals to agents that take most of the
    deadline; the sweepers of the two live replicas (the other one and the restarted one) must
    finish it within the bound, each signal dispatched again by one sweeper only."""
    stack = run.stack
    for name in GOOD:
        await stack.agents.set(name, mode="slow", delay_ms=AGENT_TIMEOUT_MS - 300)
    await stack.start_replica("router-a")
    await stack.start_replica("router-b")
    signals = run.signals("backlog", run.scale.n(60, 150), "fanout")
    load = asyncio.create_task(
        send_all(stack.recorder, signals, stack.pick("router-a"), len(signals))
    )
    # Every signal in flight on router-a: all reached the first agent, none answered yet.
    await stack.agents.wait_received("good-a", len(signals), timeout_s=30)
    killed_at = time.time()
    stack.replicas["router-a"].proc.kill9()
    await load
    run.crash_affected = {a.log_id for a in stack.recorder.answers if a.status == 0}
    backlog = len(run.crash_affected)
    run.notes.append(f"{backlog} signals were in flight on the killed replica")
    if backlog < len(signals) // 2:
        run.fail("fault", f"only {backlog} signals were in flight: not a large backlog")
    restart_s = await stack.restart_replica(stack.replicas["router-a"])
    run.notes.append(f"restarted replica live after {restart_s:.1f} s")
    if not await settle_all(run, signals, "router-a", "router-b"):
        return
    run.recovery_s = time.time() - killed_at
    # The documented bound: the dead owner's lease, a sweep interval, then one deadline per
    # SWEEP_CONCURRENCY signals per live sweeper (plus the restart and a little slack).
    rounds = -(-backlog // (2 * SWEEP_CONCURRENCY))
    bound = LEASE_S + SWEEP_INTERVAL_S + (rounds + 1) * DEADLINE_S + restart_s + 5
    run.notes.append(f"recovery bound {bound:.1f} s for {backlog} signals ({rounds} sweep rounds)")
    if run.recovery_s > bound:
        run.fail("recovery", f"took {run.recovery_s:.1f} s, over the bound of {bound:.1f} s")
    receipts = Counter(
        (r.key, r.agent)
        for r in (await stack.evidence()).receipts
        if r.effect and r.key in run.crash_affected
    )
    twice_swept = sorted(f"{key}@{agent}" for (key, agent), n in receipts.items() if n > 2)
    if twice_swept:
        run.fail("b", f"{len(twice_swept)} signals dispatched by two sweepers: {twice_swept[:3]}")


# --------------------------------------------------------------------------- 2 postgres stop


async def postgres_stop(run: Run) -> None:
    """Hard-stop Postgres (``pg_ctl -m immediate``) under load, start it again."""
    stack = run.stack
    replica = await stack.start_replica("router-a")
    stop = asyncio.Event()
    signals: dict[int, Signal] = {}

    def make(index: int) -> Signal:
        signals[index] = Signal(f"pgstop-{run.tag}-{index}", {"route": "fast", "n": index})
        return signals[index]

    load = asyncio.create_task(
        steady_load(
            stack.recorder,
            make,
            stack.pick("router-a"),
            rate_per_s=25,
            stop=stop,
            max_requests=5000,
        )
    )
    windows: list[tuple[float, float]] = []
    recoveries: list[float] = []
    try:
        for _cycle in range(run.scale.n(1, 2)):
            await acks_grow(run, 30, timeout_s=20)
            began = time.time()
            await asyncio.to_thread(stack.cluster.stop_immediate)
            # The outage lasts while this many requests are answered (503s, fast): seconds.
            await answers_grow(run, run.scale.n(75, 125), began, timeout_s=15)
            await asyncio.to_thread(stack.cluster.start)
            ended = time.time()
            windows.append((began, ended))
            run.notes.append(f"Postgres down for {ended - began:.1f} s")
            await acks_grow(run, 30, timeout_s=30)
            first = first_ack_after(stack.recorder.answers, ended)
            if first is not None:
                recoveries.append(first)
    finally:
        stop.set()
        await load
    run.crash_affected = affected_by(stack.recorder.answers, windows)
    await settle_all(run, list(signals.values()), "router-a")
    if not replica.proc.alive():
        run.fail("process", f"router-a exited with {replica.proc.returncode()} during the outage")
    run.recovery_s = max(recoveries) if len(recoveries) == len(windows) else None
    if run.recovery_s is None:
        run.fail("recovery", "no request was acknowledged after Postgres came back")


# --------------------------------------------------------------------------- 3 terminate


async def kill_connections(run: Run) -> None:
    """``pg_terminate_backend`` every router connection, several times, under load."""
    stack = run.stack
    await stack.start_replica("router-a")
    await stack.start_replica("router-b")
    stop = asyncio.Event()
    signals: dict[int, Signal] = {}

    def make(index: int) -> Signal:
        signals[index] = Signal(f"term-{run.tag}-{index}", {"route": "fast", "n": index})
        return signals[index]

    load = asyncio.create_task(
        steady_load(
            stack.recorder,
            make,
            stack.pick("router-a", "router-b"),
            rate_per_s=30,
            stop=stop,
            max_requests=5000,
        )
    )
    windows: list[tuple[float, float]] = []
    killed: list[int] = []
    try:
        for _round in range(run.scale.n(4, 8)):
            await acks_grow(run, 15, timeout_s=20)
            began = time.time()
            killed.append(await stack.cluster.terminate_router_backends(stack.database))
            windows.append((began, time.time()))
        await acks_grow(run, 15, timeout_s=20)
    finally:
        stop.set()
        await load
    run.notes.append(f"router backends terminated per round: {killed}")
    if not any(killed):
        run.fail("fault", "no backend with application_name 'router-service' was found to kill")
    run.crash_affected = affected_by(stack.recorder.answers, windows)
    await settle_all(run, list(signals.values()), "router-a", "router-b")
    gaps = [first_ack_after(stack.recorder.answers, end) for _, end in windows]
    run.recovery_s = max((g for g in gaps if g is not None), default=None)


# --------------------------------------------------------------------------- 7 drain


async def sigterm_drain(run: Run) -> None:
    """SIGTERM while requests are in flight: they finish, the process exits 0."""
    stack = run.stack
    await stack.agents.set("good-a", mode="slow", delay_ms=1000)
    drains: list[float] = []
    for workers in (1,) if run.scale.quick else (1, 2):
        name = f"router-w{workers}"
        replica = await stack.start_replica(name, workers=workers)
        signals = run.signals(f"drain{workers}", run.scale.n(20, 40), "fast")
        already = len(await stack.agents.received("good-a"))
        load = asyncio.create_task(
            send_all(stack.recorder, signals, stack.pick(name), concurrency=len(signals))
        )
        await stack.agents.wait_received("good-a", already + len(signals), timeout_s=20)
        termed = time.monotonic()
        replica.proc.sigterm()
        answers = await load
        code = await replica.proc.wait_exit(30)
        drains.append(time.monotonic() - termed)
        unfinished = Counter(a.status for a in answers if a.status != 200)
        if unfinished:
            run.fail("drain", f"--workers {workers}: in-flight requests ended {dict(unfinished)}")
        if code != 0:
            run.fail("drain", f"--workers {workers}: exit code {code} after SIGTERM, not 0")
        run.notes.append(f"--workers {workers}: drained in {drains[-1]:.1f} s, exit code {code}")
        replica.proc.stop()
    run.recovery_label = "drain " + " / ".join(f"{d:.1f} s" for d in drains)
