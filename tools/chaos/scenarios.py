"""The scenarios: the registry, and ``run_scenario``, which gives each its own stack, runs it
within its time budget, checks the invariants over what it recorded and cleans everything up.

A scenario body (in ``crashes``, ``queues``, ``pressure``, ``fairness``) injects one fault and
fills its ``Run``: the log ids the fault may have interrupted (``crash_affected``), the recovery
time, notes, and violations of its own checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from chaos.client import session as client_session
from chaos.cluster import ThrowawayCluster
from chaos.crashes import (
    kill_backlog,
    kill_connections,
    kill_router,
    postgres_stop,
    sigterm_drain,
)
from chaos.fairness import noisy_sender
from chaos.invariants import Verdict, dispatched_after_503, evaluate
from chaos.pressure import agent_failures, duplicates, flood, overload
from chaos.queues import dlq_worker, replayers
from chaos.run import Run, Scale, seconds
from chaos.stack import Stack


@dataclass
class Outcome:
    name: str
    title: str
    verdict: Verdict
    recovery: str
    notes: list[str]
    duration_s: float
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and self.verdict.passed


Body = Callable[[Run], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    body: Body
    quick: bool
    budget_s: float  # hard bound on the whole scenario, clean-up excluded


# --------------------------------------------------------------------------- registry

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("kill-router", "kill -9 a router mid-fan-out, restart it", kill_router, True, 150),
    Scenario(
        "kill-backlog",
        "kill -9 the router holding a large slow backlog; two sweepers recover it",
        kill_backlog,
        False,
        180,
    ),
    Scenario(
        "postgres-stop", "Postgres hard stop and restart under load", postgres_stop, True, 200
    ),
    Scenario(
        "kill-connections",
        "pg_terminate_backend on every router connection",
        kill_connections,
        True,
        150,
    ),
    Scenario(
        "agent-failures",
        "agents 5xx / 429 / 4xx / hang / drip / reset / refused",
        agent_failures,
        True,
        150,
    ),
    Scenario("duplicates", "200 concurrent duplicates across two replicas", duplicates, True, 150),
    Scenario("replayers", "four concurrent replayers, one killed -9", replayers, True, 180),
    Scenario(
        "dlq-worker", "redelivery workers drain the queue, one killed -9", dlq_worker, True, 180
    ),
    Scenario("sigterm-drain", "SIGTERM drain with requests in flight", sigterm_drain, True, 120),
    Scenario("overload", "MAX_IN_FLIGHT back-pressure under a burst", overload, True, 120),
    Scenario(
        "noisy-sender",
        "a noisy sender at 20x five quiet ones against one slow agent",
        noisy_sender,
        True,
        90,
    ),
    Scenario(
        "flood", "100 MB / chunked bodies and slow headers vs a control client", flood, False, 200
    ),
)


async def run_scenario(
    scenario: Scenario, cluster: ThrowawayCluster, workdir: Path, scale: Scale
) -> Outcome:
    started = time.monotonic()
    error: str | None = None
    verdict = Verdict()
    async with client_session() as session:
        stack = Stack(scenario.name, cluster, workdir, session)
        run = Run(stack, scale)
        try:
            async with asyncio.timeout(scenario.budget_s):
                await stack.start()
                await scenario.body(run)
                evidence = await stack.evidence(frozenset(run.crash_affected))
            verdict = evaluate(evidence)
            if verdict.retries:
                run.notes.append(
                    f"{verdict.retries} of the redeliveries were the router's retries after an "
                    "attempt timed out with the agent already working on it"
                )
            after_503 = dispatched_after_503(evidence.answers, evidence.receipts)
            if after_503:
                run.notes.append(
                    f"{len(after_503)} signals answered 503 had reached an agent anyway "
                    "(claimed before the fault; finished by the sweeper)"
                )
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            if isinstance(exc, TimeoutError) and not str(exc):
                error = f"ran past its {scenario.budget_s:g} s budget"
            with contextlib.suppress(Exception):
                verdict = evaluate(await stack.evidence(frozenset(run.crash_affected)))
        finally:
            stack.processes.close()
            with contextlib.suppress(Exception):
                await stack.close()
    verdict.violations.extend(run.violations)
    recovery = run.recovery_label or seconds(run.recovery_s)
    return Outcome(
        name=scenario.name,
        title=scenario.title,
        verdict=verdict,
        recovery=recovery,
        notes=run.notes,
        duration_s=time.monotonic() - started,
        error=error,
    )


__all__ = ["SCENARIOS", "Outcome", "Scale", "Scenario", "run_scenario"]
