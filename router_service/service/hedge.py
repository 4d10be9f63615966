"""Hedged first-success: call the first agent, and start the next only when no answer came
within the threshold (and the budget allows); the first good answer wins, the rest are
cancelled. A failure with nothing else running moves on to the next agent at once, as in
``fallback``; that is not a hedge and costs no budget."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from router_service.domain.outcome import AgentResult
from router_service.domain.routing import AgentSpec

Launch = Callable[[AgentSpec], "asyncio.Task[AgentResult]"]


@dataclass(slots=True)
class RaceOutcome:
    finished: dict[str, AgentResult]  # agents whose call ended (cancelled ones are not here)
    hedged: list[str]  # agents started as hedges, in order
    winner: str | None


async def race(
    agents: Sequence[AgentSpec],
    launch: Launch,
    delay_for: Callable[[AgentSpec], float | None],
    may_hedge: Callable[[AgentSpec], bool],
) -> RaceOutcome:
    """Run the hedge race; ``delay_for`` is the wait after starting an agent (None: no
    hedge), ``may_hedge`` spends the budget for the agent about to be started."""
    waiting = list(agents)
    outcome = RaceOutcome({}, [], None)
    running: dict[asyncio.Task[AgentResult], AgentSpec] = {}
    last = waiting.pop(0)
    running[launch(last)] = last
    hedging = True  # until the budget says no, for this signal
    try:
        while running:
            timeout = delay_for(last) if waiting and hedging else None
            done, _ = await asyncio.wait(
                running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:  # slow answer: hedge with the next agent, budget permitting
                if may_hedge(waiting[0]):
                    last = waiting.pop(0)
                    running[launch(last)] = last
                    outcome.hedged.append(last.name)
                else:
                    hedging = False
                continue
            for task in done:
                running.pop(task)
                result = task.result()
                outcome.finished[result.agent] = result
                if result.ok and outcome.winner is None:
                    outcome.winner = result.agent
            if outcome.winner is not None:
                break
            if not running and waiting:  # everyone running failed: the next, at once
                last = waiting.pop(0)
                running[launch(last)] = last
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
    return outcome


def hedge_outcome(agent: str, outcome: RaceOutcome) -> str:
    """``won``, ``failed`` or ``lost`` (cancelled, or finished after the winner)."""
    if outcome.winner == agent:
        return "won"
    result = outcome.finished.get(agent)
    return "failed" if result is not None and not result.ok else "lost"
