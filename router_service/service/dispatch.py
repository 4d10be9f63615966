"""Bounded fan-out to agents in one of four modes, with retries inside one deadline.

The client of each agent is chosen by its protocol (``http``, ``a2a``); the wire format lives in
the client. Agent attempts in flight across the process are bounded by a ``FairGate``: when it is
full, slots go round robin across senders, so one flooding sender cannot starve the others.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from router_service.domain.breaker import AgentGuard, GuardPolicy
from router_service.domain.errors import (
    AgentError,
    AgentNeedsInput,
    PermanentAgentError,
    RetryableAgentError,
)
from router_service.domain.hedging import HedgeBudget, LatencyWindow, hedge_delay
from router_service.domain.outcome import AgentResult
from router_service.domain.retry import RetryPolicy
from router_service.domain.routing import AgentSpec, HedgePolicy, Mode, Plan
from router_service.domain.trace import TraceContext
from router_service.service import hedge
from router_service.service.fairness import FairGate, SenderSlotsFull
from router_service.service.ports import AgentClient, AgentReply, Envelope, Events

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

# The error of an agent's result when its call raised something unexpected (logged in full as
# ``dispatch.crashed``).
_CRASHED = "internal error during dispatch"


@dataclass(slots=True)
class _Progress:
    """What one agent's task has done so far, so a cancelled task can still be reported."""

    attempts: int = 0
    started: float = 0.0
    last_error: str | None = None
    last_status: int | None = None
    needs_input: AgentNeedsInput | None = None
    probe: bool = False  # the first attempt goes out even through an open circuit


class Dispatcher:
    """Calls a plan's agents. ``agent_calls`` bounds attempts in flight across the process."""

    def __init__(
        self,
        clients: Mapping[str, AgentClient],
        events: Events,
        *,
        policy: RetryPolicy,
        agent_timeout_s: float,
        fanout_concurrency: int,
        global_concurrency: int,
        guard_policy: GuardPolicy | None = None,
        sender_weight: Callable[[str], float] | None = None,
        sender_slots: int = 0,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._clients = clients  # protocol -> client
        self._events = events
        self._policy = policy
        self._agent_timeout_s = agent_timeout_s
        self._fanout_concurrency = fanout_concurrency
        self.agent_calls = FairGate(
            global_concurrency, sender_weight, events.senders_waiting, per_sender=sender_slots
        )
        self._guard_policy = guard_policy or GuardPolicy()
        self._guards: dict[str, AgentGuard] = {}
        self._latencies: dict[str, LatencyWindow] = {}  # successful attempts, for hedge: p95
        self._hedge_budgets: dict[str, HedgeBudget] = {}  # per kind
        self._sleep = sleep
        self._rand = rand
        # What deadlines are instants of; tests pass a clock that their ``sleep`` advances.
        self._clock = clock

    async def dispatch(
        self,
        plan: Plan,
        envelope: Envelope,
        trace: TraceContext,
        deadline: float,
        *,
        probe: bool = False,
    ) -> list[AgentResult]:
        """Run the plan; ``deadline`` is a ``time.perf_counter()`` instant. ``probe``: an
        operator's "try now", whose first attempt to each agent goes out even through an open
        circuit, as its half-open probe."""
        # A bound on concurrent calls only where there are more agents than it allows.
        fanout = (
            asyncio.Semaphore(self._fanout_concurrency)
            if len(plan.agents) > self._fanout_concurrency
            else None
        )
        if plan.mode is Mode.FALLBACK:
            return await self._fallback(plan.agents, envelope, trace, deadline, probe)
        if plan.mode is Mode.HEDGE and len(plan.agents) > 1:
            return await self._hedge(plan, envelope, trace, deadline)
        if plan.mode is Mode.AGGREGATE:
            return await _every(
                self._bounded(a, envelope, trace, deadline, fanout, _Progress(probe=probe))
                for a in plan.agents
            )
        return await self._first_success(plan.agents, envelope, trace, deadline, fanout, probe)

    def deadline_in(self, seconds: float) -> float:
        """The instant ``seconds`` from now, on the clock deadlines are measured by."""
        return self._clock() + seconds

    async def call_one(
        self,
        agent: AgentSpec,
        envelope: Envelope,
        trace: TraceContext,
        deadline: float,
        *,
        probe: bool = False,
    ) -> AgentResult:
        progress = _Progress(probe=probe)
        return await self.call_with_retries(agent, envelope, trace, deadline, progress)

    async def _fallback(
        self,
        agents: Sequence[AgentSpec],
        envelope: Envelope,
        trace: TraceContext,
        deadline: float,
        probe: bool,
    ) -> list[AgentResult]:
        results: list[AgentResult] = []
        for agent in agents:
            if self._clock() >= deadline:
                break
            progress = _Progress(probe=probe)
            result = await self.call_with_retries(agent, envelope, trace, deadline, progress)
            results.append(result)
            if result.ok:
                break
        return results

    async def _first_success(
        self,
        agents: Sequence[AgentSpec],
        envelope: Envelope,
        trace: TraceContext,
        deadline: float,
        fanout: asyncio.Semaphore | None,
        probe: bool,
    ) -> list[AgentResult]:
        if len(agents) == 1:  # nothing to race or bound: no tasks, no semaphore
            single = _Progress(probe=probe)
            return [await self.call_with_retries(agents[0], envelope, trace, deadline, single)]
        progress = {a.name: _Progress(probe=probe) for a in agents}
        tasks = [
            asyncio.create_task(
                self._bounded(a, envelope, trace, deadline, fanout, progress[a.name])
            )
            for a in agents
        ]
        done: dict[str, AgentResult] = {}
        try:
            for next_done in asyncio.as_completed(tasks):
                result = await next_done
                done[result.agent] = result
                if result.ok:
                    break
        finally:
            losers = [t for t in tasks if not t.done()]
            for task in losers:
                task.cancel()
            await asyncio.gather(*losers, return_exceptions=True)
        return _with_cancelled(agents, progress, done)

    async def _hedge(
        self, plan: Plan, envelope: Envelope, trace: TraceContext, deadline: float
    ) -> list[AgentResult]:
        policy = plan.hedge or HedgePolicy()
        budget = self._hedge_budgets.setdefault(plan.kind, HedgeBudget())
        budget.deposit(policy.max_extra)
        progress = {a.name: _Progress() for a in plan.agents}

        def launch(agent: AgentSpec) -> asyncio.Task[AgentResult]:
            state = progress[agent.name]
            return asyncio.create_task(
                self.call_with_retries(agent, envelope, trace, deadline, state)
            )

        def may_hedge(agent: AgentSpec) -> bool:
            if budget.try_spend():
                return True
            self._events.hedge(agent=agent.name, outcome="no_budget")
            return False

        def delay_for(agent: AgentSpec) -> float | None:
            return hedge_delay(policy, self._latencies.get(agent.name))

        race = await hedge.race(plan.agents, launch, delay_for, may_hedge)
        for name in race.hedged:
            self._events.hedge(agent=name, outcome=hedge.hedge_outcome(name, race))
        results = _with_cancelled(plan.agents, progress, dict(race.finished))
        marked = set(race.hedged)
        return [replace(r, hedge=True) if r.agent in marked else r for r in results]

    async def _bounded(
        self,
        agent: AgentSpec,
        envelope: Envelope,
        trace: TraceContext,
        deadline: float,
        fanout: asyncio.Semaphore | None,
        progress: _Progress | None = None,
    ) -> AgentResult:
        state = progress or _Progress()
        if fanout is None:
            return await self.call_with_retries(agent, envelope, trace, deadline, state)
        async with fanout:
            return await self.call_with_retries(agent, envelope, trace, deadline, state)

    def guard(self, agent: str) -> AgentGuard:
        found = self._guards.get(agent)
        if found is None:
            found = self._guards[agent] = self._guard_policy.guard(time.monotonic)
        return found

    def circuit_retry_in(self, agent: str) -> float:
        """Seconds until the agent's open circuit lets a probe through (0: not open)."""
        found = self._guards.get(agent)
        return found.breaker.retry_in_s() if found is not None else 0.0

    def guards(self) -> dict[str, AgentGuard]:
        """The agents called so far, with their breaker and retry budget (read-only use)."""
        return dict(sorted(self._guards.items()))

    def circuit_states(self) -> dict[str, str]:
        return {name: g.breaker.state.name.lower() for name, g in sorted(self._guards.items())}

    async def call_with_retries(
        self,
        agent: AgentSpec,
        envelope: Envelope,
        trace: TraceContext,
        deadline: float,
        progress: _Progress,
    ) -> AgentResult:
        """One agent's result, with its retries. An unexpected error in an attempt (a bug of
        ours, or an answer we failed to read) ends this agent's call as its failed result,
        never retried: the other agents of the signal keep their own results."""
        progress.started = time.perf_counter()
        guard = self.guard(agent.name)
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                progress.last_error = progress.last_error or "deadline exceeded"
                return self._failed(agent, progress)
            if progress.probe and not progress.attempts:
                self._observe(agent.name, guard, guard.breaker.force_probe)
            elif not self._observe(agent.name, guard, guard.breaker.allow):
                self._events.circuit_rejected(agent=agent.name)
                retry_in = guard.breaker.retry_in_s()
                progress.last_error = (
                    f"circuit open: the agent keeps failing, not called (next probe in "
                    f"{retry_in:.0f} s)"
                )
                return self._failed(agent, progress)
            try:
                # The wait for an agent slot counts against the deadline: a signal that cannot
                # get one in time fails like a timed-out attempt (its lease must not run out
                # while it queues).
                waited = await self.agent_calls.acquire_within(envelope.sender_id, remaining)
            except TimeoutError as exc:
                guard.breaker.release()  # not the agent's doing
                progress.last_error = "no agent slot free before the deadline " + (
                    "(this sender's SENDER_MAX_IN_FLIGHT)"
                    if isinstance(exc, SenderSlotsFull)
                    else "(GLOBAL_CONCURRENCY)"
                )
                return self._failed(agent, progress)
            progress.attempts += 1
            try:
                try:
                    reply = await self._attempt(
                        agent, envelope, trace, remaining - waited, progress, guard
                    )
                finally:
                    self.agent_calls.release(envelope.sender_id)  # before any retry's backoff
            except AgentNeedsInput as exc:
                progress.needs_input = exc  # not a success, and re-sending cannot help
                return self._failed(agent, progress, exc.response)
            except AgentError as exc:
                delay = self._retry_delay(agent.name, progress, exc, deadline, guard)
                if delay is None:
                    return self._failed(agent, progress, exc.response)
                self._events.retry(agent=agent.name, delay_s=delay)
                await self._sleep(delay)
                continue
            except Exception as exc:
                self._events.dispatch_crashed(log_id=envelope.log_id, error=exc)
                progress.last_error, progress.last_status = _CRASHED, None
                return self._failed(agent, progress)
            return AgentResult(
                agent=agent.name,
                ok=True,
                status_code=reply.status_code,
                attempts=progress.attempts,
                latency_ms=(time.perf_counter() - progress.started) * 1000,
                response=reply.body,
            )

    async def _attempt(
        self,
        agent: AgentSpec,
        envelope: Envelope,
        trace: TraceContext,
        remaining: float,
        progress: _Progress,
        guard: AgentGuard,
    ) -> AgentReply:
        """One attempt; its verdict feeds the breaker (a 4xx proves the agent is alive)."""
        span = trace.child()
        timeout = min(agent.timeout_s or self._agent_timeout_s, remaining)
        client = self._clients[agent.protocol]
        guard.budget.record_call()
        started = time.perf_counter()
        try:
            reply = await client.deliver(agent, envelope, span, timeout)
        except AgentError as exc:
            progress.last_error = exc.message
            progress.last_status = exc.status_code
            retryable = isinstance(exc, RetryableAgentError)
            outcome = guard.breaker.failure if retryable else guard.breaker.success
            self._observe(agent.name, guard, outcome)
            self._attempted(agent, progress, span, started, exc, retryable)
            raise
        except Exception:
            # Not a verdict the client knows: the attempt failed all the same, and counts
            # against the breaker, so that an agent whose answers keep crashing us is cut off.
            progress.last_error, progress.last_status = _CRASHED, None
            self._observe(agent.name, guard, guard.breaker.failure)
            self._attempted(agent, progress, span, started, PermanentAgentError(_CRASHED), False)
            raise
        except BaseException:
            guard.breaker.release()  # cancelled mid-attempt: no verdict on the agent
            raise
        self._observe(agent.name, guard, guard.breaker.success)
        self._attempted(agent, progress, span, started, None, False, reply.status_code)
        window = self._latencies.get(agent.name)
        if window is None:
            window = self._latencies[agent.name] = LatencyWindow()
        window.observe(time.perf_counter() - started)
        return reply

    def _retry_delay(
        self,
        agent: str,
        progress: _Progress,
        exc: AgentError,
        deadline: float,
        guard: AgentGuard,
    ) -> float | None:
        if not isinstance(exc, RetryableAgentError):
            return None
        delay = self._policy.next_delay(
            progress.attempts, deadline - self._clock(), exc.retry_after_s, self._rand
        )
        if delay is not None and not guard.budget.try_retry():
            progress.last_error = f"{exc.message} (retry budget exhausted)"
            return None
        return delay

    def _observe(self, agent: str, guard: AgentGuard, step: Callable[[], T]) -> T:
        """Run a breaker step and report the state when it changed."""
        before = guard.breaker.state
        result = step()
        if guard.breaker.state is not before:
            self._events.circuit_state(agent=agent, state=guard.breaker.state.name.lower())
        return result

    def _attempted(
        self,
        agent: AgentSpec,
        progress: _Progress,
        span: TraceContext,
        started: float,
        error: AgentError | None,
        retryable: bool,
        status_code: int | None = None,
    ) -> None:
        outcome = "ok" if error is None else "retryable" if retryable else "permanent"
        if isinstance(error, AgentNeedsInput):
            outcome = "needs_input"
        self._events.agent_attempt(
            agent=agent.name,
            outcome=outcome,
            status_code=error.status_code if error else status_code,
            latency_s=time.perf_counter() - started,
            attempt=progress.attempts,
            span=span,
            error=error.message if error else None,
        )

    @staticmethod
    def _failed(agent: AgentSpec, progress: _Progress, response: object = None) -> AgentResult:
        asked = progress.needs_input
        return AgentResult(
            agent=agent.name,
            ok=False,
            status_code=progress.last_status,
            attempts=progress.attempts,
            latency_ms=(time.perf_counter() - progress.started) * 1000,
            response=response,
            error=progress.last_error,
            needs_input=asked is not None,
            task_id=asked.task_id if asked else None,
            context_id=asked.context_id if asked else None,
        )


async def _every(calls: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Every call's result, in order. Should one raise (or the caller be cancelled), the
    others are cancelled and awaited before the error goes on: no call outlives the answer."""
    tasks = [asyncio.create_task(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        unfinished = [task for task in tasks if not task.done()]
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.gather(*unfinished, return_exceptions=True)


def _with_cancelled(
    agents: Sequence[AgentSpec], progress: Mapping[str, _Progress], done: dict[str, AgentResult]
) -> list[AgentResult]:
    """Results in table order; a called agent whose task was cancelled is reported as such."""
    for agent in agents:
        state = progress[agent.name]
        if agent.name not in done and state.attempts:
            done[agent.name] = AgentResult(
                agent=agent.name,
                ok=False,
                status_code=state.last_status,
                attempts=state.attempts,
                latency_ms=(time.perf_counter() - state.started) * 1000,
                error="cancelled",
            )
    return [done[a.name] for a in agents if a.name in done]
