"""The dead-letter queue under fire: concurrent replayers and redelivery workers, one of each
killed -9 mid-batch; every entry must end replayed, none sent twice but the interrupted one."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Sequence

from chaos.client import poll, send_all
from chaos.procs import ROUTER, Proc, run_command
from chaos.run import DEADLINE_S, Run, post_json

# --------------------------------------------------------------------------- 6 replayers

# How long the agent holds each replay while a replayer is picked to die (then it answers fast).
HELD_MS = 2000


async def replayers(run: Run) -> None:
    """Four concurrent replayers (three CLI processes, one POST /dlq/replay); one killed -9."""
    stack = run.stack
    await stack.agents.set("flaky", mode="fail", status=400)
    await stack.start_replica("router-a")
    count = run.scale.n(90, 240)
    signals = run.signals("parked", count, "replay")
    await send_all(stack.recorder, signals, stack.pick("router-a"), concurrency=24)
    run.notes.append(f"{len(await stack.dead_letters())} dead letters parked")
    # Each replayer claims one entry at a time: their first ones are held at the agent while
    # one replayer dies, then the agent answers in 80 ms.
    await stack.agents.set("flaky", mode="slow", delay_ms=HELD_MS)
    limit = count // 3
    clis = [
        stack.processes.spawn("replayer", [ROUTER, "replay-dlq", "--limit", str(limit)], stack.env)
        for _ in range(3)
    ]
    http = asyncio.create_task(post_json(run, "router-a", "/dlq/replay", {"limit": limit}))
    victim, held = await _pick_victim(run, clis)
    killed_at = time.time()
    victim.kill9()
    await stack.agents.set("flaky", mode="slow", delay_ms=80)
    claimed = await _claims(run, victim)
    run.crash_affected = set(claimed)
    run.notes.append(
        f"killed a replayer holding {len(claimed)} unfinished claims (of {held} it took)"
    )
    if not claimed:
        run.fail("fault", "the killed replayer held no unfinished claim: nothing was interrupted")
    for proc in clis:
        if proc is not victim:
            code = await proc.wait_exit(90)
            if code != 0:
                run.fail("process", f"a surviving replayer exited with {code}: {proc.tail(2)}")
            _check_limit(run, "replay-dlq", _replayed(proc.tail(1)), limit)
    answer = await http
    run.notes.append(f"POST /dlq/replay {{'limit': {limit}}} answered {answer}")
    if isinstance(answer, dict):
        _check_limit(run, "POST /dlq/replay", answer.get("replayed"), limit)
    await _check_claims_expire(run)
    # The claims of the dead replayer expire; then one more replay takes what it left.
    await poll(lambda: _no_live_claims(run), timeout_s=4 * DEADLINE_S + 10)
    code, out = await run_command([ROUTER, "replay-dlq", "--limit", "1000"], stack.env)
    run.notes.append(f"final replay-dlq: {out.strip().splitlines()[-1] if out.strip() else code}")
    left = Counter(d.status for d in await stack.dead_letters() if d.status != "replayed")
    if left:
        run.fail("dlq", f"dead letters not replayed in the end: {dict(left)}")
    else:
        run.recovery_s = time.time() - killed_at


def _replayed(line: str) -> int | None:
    found = re.search(r"replayed (\d+):", line)
    return int(found[1]) if found else None


def _check_limit(run: Run, who: str, replayed: object, limit: int) -> None:
    if isinstance(replayed, int) and replayed > limit:
        run.fail(
            "replay-limit",
            f"{who} with limit {limit} replayed {replayed} entries: the claim took more rows "
            "than its LIMIT",
        )


async def _claims(run: Run, proc: Proc) -> list[str]:
    """The log ids of the pending entries ``proc`` holds a claim on (owner host:pid:nonce)."""
    rows = await run.stack.cluster.fetch(
        "SELECT log_id FROM dead_letters WHERE status = 'pending' AND claimed_by LIKE $1",
        f"%:{proc.pid}:%",
        database=run.stack.database,
    )
    return [r["log_id"] for r in rows]


async def _pick_victim(run: Run, procs: Sequence[Proc]) -> tuple[Proc, int]:
    """The first process seen holding a claim: a replayer claims one entry at a time and holds
    it while the agent holds its request (``HELD_MS``), so it dies with that claim unfinished.
    Returns it and how many claims it held."""
    found: list[tuple[Proc, int]] = []

    async def holding() -> bool:
        for proc in procs:
            if proc.alive() and (held := len(await _claims(run, proc))):
                found.append((proc, held))
                return True
        return all(not p.alive() for p in procs)

    await poll(holding, timeout_s=30, every_s=0.02)
    return found[0] if found else (procs[0], 0)


async def _check_claims_expire(run: Run) -> None:
    """Nothing may be stuck: every entry is replayed, or pending with a claim that expires."""
    bound = 4 * DEADLINE_S + 5
    rows = await run.stack.cluster.fetch(
        "SELECT count(*) AS n FROM dead_letters WHERE status = 'pending' AND claim_expires_at "
        "> now() + make_interval(secs => $1)",
        bound,
        database=run.stack.database,
    )
    if rows[0]["n"]:
        run.fail("dlq", f"{rows[0]['n']} dead letters hold a claim longer than {bound:g} s")


async def _no_live_claims(run: Run) -> bool:
    rows = await run.stack.cluster.fetch(
        "SELECT count(*) AS n FROM dead_letters WHERE status = 'pending' "
        "AND claim_expires_at > now()",
        database=run.stack.database,
    )
    return int(rows[0]["n"]) == 0


# --------------------------------------------------------------------------- 6b worker


async def dlq_worker(run: Run) -> None:
    """Automatic redelivery: two ``router-service worker`` processes and a replica with
    ``DLQ_WORKER_ENABLED=true`` drain the queue at a capped rate; one worker is killed -9 and
    started again."""
    stack = run.stack
    await stack.agents.set("flaky", mode="fail", status=400)
    await stack.start_replica("router-a")
    count = run.scale.n(150, 300)
    signals = run.signals("worker", count, "replay")
    await send_all(stack.recorder, signals, stack.pick("router-a"), concurrency=24)
    run.notes.append(f"{len(await stack.dead_letters())} dead letters parked")
    await stack.agents.set("flaky", mode="slow", delay_ms=HELD_MS)  # until one redeliverer dies
    pace = {"DLQ_WORKER_RATE": "15", "DLQ_WORKER_INTERVAL_S": "0.5", "DLQ_RETRY_BASE_S": "1"}
    env = {**stack.env, **pace}
    workers = [stack.processes.spawn("worker", [ROUTER, "worker"], env) for _ in range(2)]
    replica = await stack.start_replica("router-b", env={**pace, "DLQ_WORKER_ENABLED": "true"})
    # The first redeliverer seen holding a claim dies: a worker process or the replica.
    victim, held = await _pick_victim(run, [*workers, replica.proc])
    killed_at = time.time()
    victim.kill9()
    await stack.agents.set("flaky", mode="slow", delay_ms=20)
    claimed = await _claims(run, victim)
    run.crash_affected = set(claimed)
    who = "the replica's worker" if victim is replica.proc else "a worker process"
    run.notes.append(f"killed {who} holding {len(claimed)} unfinished claims (of {held})")
    if not claimed:
        run.fail("fault", "the killed worker held no unfinished claim: nothing was interrupted")
    if victim is replica.proc:
        await stack.restart_replica(replica)
    else:
        stack.processes.spawn("worker", [ROUTER, "worker"], env)

    async def drained() -> bool:
        return all(d.status == "replayed" for d in await stack.dead_letters())

    took = await poll(drained, timeout_s=count / 15 + 4 * DEADLINE_S + 30, every_s=0.5)
    left = Counter(d.status for d in await stack.dead_letters() if d.status != "replayed")
    if took is None:
        run.fail("dlq", f"the workers left dead letters not replayed: {dict(left)}")
    else:
        run.recovery_s = time.time() - killed_at
    for proc in [*workers, replica.proc]:
        if proc is not victim and not proc.alive():
            run.fail("process", f"{proc.name} exited with {proc.returncode()}: {proc.tail(2)}")
