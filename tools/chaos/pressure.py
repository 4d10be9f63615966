"""Pressure from outside: failing agents, duplicate storms, more signals than the router admits,
and hostile clients (huge bodies, slow headers) beside a control client."""

from __future__ import annotations

import asyncio
import sys
import time
from collections import Counter
from collections.abc import Sequence

import orjson

from chaos.client import Signal, send_all
from chaos.invariants import ACKNOWLEDGED, Answer, percentile
from chaos.procs import Proc
from chaos.run import BREAKER_COOLDOWN_S, DEADLINE_S, Run, post_json, settle_all
from chaos.stack import FAILING

# --------------------------------------------------------------------------- 4 agent failures


async def agent_failures(run: Run) -> None:
    """Agents that 5xx, 429 with Retry-After, 4xx, hang, drip, reset, refuse connections."""
    stack = run.stack
    await stack.agents.set("fail5xx", mode="fail", status=503)
    await stack.agents.set("throttle", mode="fail", status=429, retry_after=1)
    await stack.agents.set("reject4xx", mode="fail", status=400)
    await stack.agents.set("hang", mode="hang")
    await stack.agents.set("drip", mode="drip", interval_ms=300, effect=False)
    await stack.agents.set("reset", mode="reset")
    await stack.start_replica("router-a", env={"BREAKER_COOLDOWN_S": str(BREAKER_COOLDOWN_S)})
    per_kind = run.scale.n(8, 15)  # over one replay batch (100 entries) either way
    signals = [s for kind in FAILING for s in run.signals(kind, per_kind, kind)]
    signals += run.signals("mixed", per_kind, "mixed")
    await send_all(stack.recorder, signals, stack.pick("router-a"), concurrency=24)
    first = list(stack.recorder.answers)
    # A client that did not believe the first answer: every signal again, same log_id.
    await send_all(stack.recorder, signals, stack.pick("router-a"), concurrency=24)
    _expect_statuses(run, first)
    slowest = max(a.ended - a.started for a in first)
    run.notes.append(f"slowest answer {slowest:.2f} s (deadline {DEADLINE_S:g} s)")
    if slowest > DEADLINE_S + 1.5:
        run.fail("deadline", f"an answer took {slowest:.2f} s, past the {DEADLINE_S:g} s deadline")
    # The agents recover (but one); replay at once, then again once the breakers may probe.
    for name in FAILING:
        if name != "refused":
            await stack.agents.set(name, mode="ok")
    replay = await _replay_once(run)
    run.notes.append(f"replay right after the agents recovered: {replay}")
    run.notes.append(f"dead letters left: {await _left_letters(run)}")
    await asyncio.sleep(BREAKER_COOLDOWN_S + 0.2)  # the breaker's documented timer, not a sync
    replay = await _replay_once(run)
    run.notes.append(f"replay after the breaker cool-down: {replay}")
    left = await _left_letters(run)
    run.notes.append(f"dead letters left: {left}")
    stranded = [
        d
        for d in await stack.dead_letters()
        if d.status != "replayed" and not d.log_id.startswith("refused-") and d.agent != "refused"
    ]
    if stranded:
        run.fail("replay", f"{len(stranded)} dead letters of recovered agents not replayed: {left}")


async def _replay_once(run: Run) -> object:
    """One ``POST /dlq/replay``: it may attempt each pending entry once, no more (every attempt
    counts toward MAX_REPLAYS, so a second pass in the same call burns one for nothing)."""
    pending = sum(1 for d in await run.stack.dead_letters() if d.status == "pending")
    replay = await post_json(run, "router-a", "/dlq/replay", {"limit": 500})
    replayed = replay.get("replayed") if isinstance(replay, dict) else None
    if isinstance(replayed, int) and replayed > pending:
        run.fail(
            "replay",
            f"one POST /dlq/replay attempted {replayed} entries with {pending} pending: entries "
            "that failed were claimed and sent again in the same call, each attempt counting "
            "toward MAX_REPLAYS",
        )
    return replay


async def _left_letters(run: Run) -> str:
    rows = await run.stack.cluster.fetch(
        "SELECT kind, agent, left(error, 60) AS error, count(*) AS n FROM dead_letters "
        "WHERE status <> 'replayed' GROUP BY 1, 2, 3 ORDER BY 1, 2",
        database=run.stack.database,
    )
    return (
        "; ".join(f"{r['n']}x {r['kind']}/{r['agent'] or '*'}: {r['error']}" for r in rows)
        or "none"
    )


def _expect_statuses(run: Run, answers: Sequence[Answer]) -> None:
    wrong = Counter(
        f"{a.log_id.split('-')[0]}:{a.status}"
        for a in answers
        if a.status != (200 if a.log_id.startswith("mixed-") else 202)
    )
    if wrong:
        listed = ", ".join(f"{n}x {k}" for k, n in wrong.most_common(5))
        run.fail("status", f"expected 202 dead_lettered (200 partial for mixed), got {listed}")


# --------------------------------------------------------------------------- 5 duplicates


async def duplicates(run: Run) -> None:
    """200 concurrent copies of one signal across two replicas (one with two workers)."""
    stack = run.stack
    await stack.agents.set("good-a", mode="slow", delay_ms=400)
    await stack.start_replica("router-a")
    await stack.start_replica("router-b", workers=2)
    pick = stack.pick("router-a", "router-b")
    copies = run.scale.n(200, 200)
    for round_ in range(run.scale.n(2, 5)):
        original = Signal(f"dup-{run.tag}-{round_}", {"route": "fast", "n": round_})
        forged = Signal(original.log_id, {"route": "fast", "n": -1})  # same key, other payload
        batch = [original] * copies + [forged] * 20
        await send_all(stack.recorder, batch, pick, concurrency=len(batch))
    answers = stack.recorder.answers
    originals = Counter(a.log_id for a in answers if a.status == 200 and not a.replayed)
    twice = [log_id for log_id, n in originals.items() if n > 1]
    if twice:
        run.fail("b", f"more than one non-replayed answer for {twice}")
    statuses = Counter(f"{a.status} {a.code or ''}".strip() for a in answers)
    run.notes.append("answers: " + ", ".join(f"{n}x {s}" for s, n in statuses.most_common()))
    received = await stack.agents.received("good-a")
    run.notes.append(f"good-a received {len(received)} requests for {run.scale.n(2, 5)} log ids")


# --------------------------------------------------------------------------- 8a overload


async def overload(run: Run) -> None:
    """Back-pressure: far more concurrent signals than ``MAX_IN_FLIGHT``; the excess must get a
    fast 503 ``overloaded`` with ``Retry-After`` and never reach an agent."""
    stack = run.stack
    limit = 16
    await stack.agents.set("good-a", mode="slow", delay_ms=1000)
    # The burst stands for many clients, here all on one address: not held to one client's
    # share of connections (MAX_CONNECTIONS_PER_CLIENT), which the flood scenario covers.
    env = {"MAX_IN_FLIGHT": str(limit), "MAX_CONNECTIONS_PER_CLIENT": "100000"}
    await stack.start_replica("router-a", env=env)
    pick = stack.pick("router-a")
    # Every slot taken by a slow signal; then probes, one at a time, measure the refusal itself.
    holders = run.signals("hold", limit, "fast")
    holding = asyncio.create_task(send_all(stack.recorder, holders, pick, limit))
    await stack.agents.wait_received("good-a", limit, timeout_s=10)
    probes = [
        await stack.recorder.route(stack.replicas["router-a"].base_url, s, target="router-a")
        for s in run.signals("probe", 20, "fast")
    ]
    await holding
    await stack.agents.set("good-a", mode="slow", delay_ms=300)
    burst = run.signals("burst", run.scale.n(150, 400), "fast")
    started = time.time()
    answers = await send_all(stack.recorder, burst, pick, len(burst))
    refused = [a for a in (*probes, *answers) if a.status == 503 and a.code == "overloaded"]
    admitted = sum(1 for a in answers if a.status in ACKNOWLEDGED)
    run.notes.append(
        f"MAX_IN_FLIGHT={limit}: of {len(burst)} signals at once {admitted} admitted, "
        f"{len(burst) - admitted} refused; {sum(1 for a in probes if a in refused)} of "
        f"{len(probes)} probes refused while the slots were full"
    )
    await _check_refusals(run, probes, refused)
    # The client now keeps within the limit: what is left drains at the agent's pace.
    retried = [*burst, *run.signals("probe", len(probes), "fast")]
    if await settle_all(run, retried, "router-a", concurrency=limit):
        run.recovery_s = time.time() - started


async def _check_refusals(run: Run, probes: Sequence[Answer], refused: Sequence[Answer]) -> None:
    """Refusals are fast, say when to come back, and never reach an agent."""
    if not refused:
        run.fail("fault", "no request was refused: back-pressure never engaged")
    took = [a.ended - a.started for a in probes if a in refused] or [0.0]
    run.notes.append(
        f"a refusal took p50 {percentile(took, 50) * 1000:.1f} ms, max {max(took) * 1000:.1f} ms "
        "(probes on a warm connection while every slot was taken)"
    )
    if max(took) > 0.25:
        run.fail("overload", f"a refusal took {max(took) * 1000:.0f} ms: it waited for a slot")
    missing = sum(1 for a in refused if not a.retry_after)
    if missing:
        run.fail("overload", f"{missing} overloaded answers had no Retry-After header")
    reached = {r.trace_id for r in await run.stack.agents.receipts(["good-a"])}
    leaked = sum(1 for a in refused if a.trace_id in reached)
    if leaked:
        run.fail("overload", f"{leaked} requests refused as overloaded reached the agent anyway")


# --------------------------------------------------------------------------- 8 floods


async def flood(run: Run) -> None:
    """100 MB bodies, chunked huge bodies and byte-by-byte headers while a control client
    measures its own latency against a baseline taken before."""
    stack = run.stack
    replica = await stack.start_replica("router-a", env={"LOG_LEVEL": "WARNING"})
    seconds = run.scale.n(8, 20)
    baseline = await _control(run, "base", duration_s=run.scale.n(4, 8))
    out = stack.workdir / "flood.json"
    args = [sys.executable, "-m", "chaos.flood", "--port", str(replica.port), "--seconds"]
    args += [str(seconds), "--bodies", str(run.scale.n(12, 24)), "--chunked"]
    args += [str(run.scale.n(6, 12)), "--slow", str(run.scale.n(200, 500)), "--out", str(out)]
    flooder = stack.processes.spawn("flood", args, {"CHAOS_API_KEY": replica.env["API_KEY"]})
    under = await _control(run, "flood", duration_s=seconds + 30, while_alive=flooder)
    code = await flooder.wait_exit(30)
    flood_end = time.time()
    after = await _control(run, "after", duration_s=run.scale.n(2, 4))
    if code != 0:
        run.fail("flood", f"the flood process exited with {code}: {flooder.tail(3)}")
        return
    report = orjson.loads(out.read_bytes())
    run.notes.append(
        f"control p50/p99: baseline {_ms(baseline, 50)}/{_ms(baseline, 99)} ms, "
        f"under flood {_ms(under, 50)}/{_ms(under, 99)} ms, "
        f"after {_ms(after, 50)}/{_ms(after, 99)} ms "
        f"({len(baseline)}, {len(under)} and {len(after)} requests)"
    )
    for kind in ("bodies", "chunked", "slow"):
        run.notes.append(f"{kind}: {report[kind]['summary']}")
        for status, n in report[kind].get("statuses", {}).items():
            if status.startswith("5") and status != "503":
                run.fail("c", f"{kind} flood got {n}x {status}")
    if not replica.proc.alive():
        run.fail("process", f"router-a died under the flood: {replica.proc.tail(3)}")
    # Recovered: the first control answer after the flood as fast as the baseline's p99 (x2).
    normal = max(2 * percentile(baseline, 99), 0.02)
    run.recovery_s = next(
        (
            a.ended - flood_end
            for a in stack.recorder.answers
            if a.started >= flood_end and a.status in ACKNOWLEDGED and a.ended - a.started <= normal
        ),
        None,
    )


async def _control(
    run: Run, label: str, duration_s: float, while_alive: Proc | None = None
) -> list[float]:
    """One request at a time for ``duration_s``; returns the latencies of acknowledged ones."""
    stack = run.stack
    latencies: list[float] = []
    give_up = time.monotonic() + duration_s
    index = 0
    while time.monotonic() < give_up and index < 100_000:
        if while_alive is not None and not while_alive.alive():
            break
        signal = Signal(f"control-{label}-{run.tag}-{index}", {"route": "fast", "n": index})
        answer = await stack.recorder.route(
            stack.replicas["router-a"].base_url, signal, target="router-a", timeout_s=30
        )
        if answer.status in ACKNOWLEDGED:
            latencies.append(answer.ended - answer.started)
        index += 1
    return latencies


def _ms(latencies: Sequence[float], q: float) -> str:
    return f"{percentile(latencies, q) * 1000:.1f}"
