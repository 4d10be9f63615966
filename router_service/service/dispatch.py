"""Bounded fan-out to agents in one of three modes, with retries inside one deadline."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from router_service.domain.breaker import AgentGuard, GuardPolicy
from router_service.domain.errors import AgentError, RetryableAgentError
from router_service.domain.outcome import AgentResult
from router_service.domain.retry import RetryPolicy
from router_service.domain.routing import AgentSpec, Mode, Plan
from router_service.observability.tracing import TraceContext
from router_service.service.ports import AgentClient, AgentReply, Events

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Envelope:
    """What every agent of one signal receives: the JSON body and the idempotency key."""

    log_id: str
    body: bytes


@dataclass(slots=True)
class _Progress:
    """What one agent's task has done so far, so a cancelled task can still be reported."""

    attempts: int = 0
    started: float = 0.0
    last_error: str | None = None
    last_status: int | None = None


class Dispatcher:
    """Calls a plan's agents. ``agent-calls`` bounds attempts in flight across the process."""

    def __init__(
        self,
        client: AgentClient,
        events: Events,
        *,
        policy: RetryPolicy,
        agent_timeout_s: float,
        fanout_concurrency: int,
        global_concurrency: int,
        guard_policy: GuardPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._events = events
        self._policy = policy
        self._agent_timeout_s = agent_timeout_s
        self._fanout_concurrency = fanout_concurrency
        self.agent_calls = asyncio.Semaphore(global_concurrency)
        self._guard_policy = guard_policy or GuardPolicy()
        self._guards: dict[str, AgentGuard] = {}
        self._sleep = sleep
        self._rand = rand

    async def dispatch(
        self, plan: Plan, envelope: Envelope, trace: TraceContext, deadline: float
    ) -> list[AgentResult]:
        """Run the plan; ``deadline`` is a ``time.perf_counter()`` instant."""
        fanout = asyncio.Semaphore(self._fanout_concurrency)
        if plan.mode is Mode.FALLBACK:
            return await self._fallback(plan.agents, envelope, trace, deadline)
        if plan.mode is Mode.AGGREGATE:
            return list(
                await asyncio.gather(
                    *(self._bounded(a, envelope, trace, deadline, fanout) for a in plan.agents)
                )
            )
        return await self._first_success(plan.agents, envelope, trace, deadline, fanout)

    async def call_one(
        self, agent: AgentSpec, envelope: Envelope, trace: TraceContext, deadline: float
    ) -> AgentResult:
        return await self.call_with_retries(agent, envelope, trace, deadline, _Progress())

    async def _fallback(
        self, agents: Sequence[AgentSpec], envelope: Envelope, trace: TraceContext, deadline: float
    ) -> list[AgentResult]:
        results: list[AgentResult] = []
        for agent in agents:
            if time.perf_counter() >= deadline:
                break
            result = await self.call_with_retries(agent, envelope, trace, deadline, _Progress())
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
        fanout: asyncio.Semaphore,
    ) -> list[AgentResult]:
        if len(agents) == 1:  # nothing to race: no tasks to create, cancel or gather
            return [await self._bounded(agents[0], envelope, trace, deadline, fanout)]
        progress = {a.name: _Progress() for a in agents}
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

    async def _bounded(
        self,
        agent: AgentSpec,
        envelope: Envelope,
        trace: TraceContext,
        deadline: float,
        fanout: asyncio.Semaphore,
        progress: _Progress | None = None,
    ) -> AgentResult:
        async with fanout:
            state = progress or _Progress()
            return await self.call_with_retries(agent, envelope, trace, deadline, state)

    def guard(self, agent: str) -> AgentGuard:
        found = self._guards.get(agent)
        if found is None:
            found = self._guards[agent] = self._guard_policy.guard(time.monotonic)
        return found

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
        progress.started = time.perf_counter()
        guard = self.guard(agent.name)
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                progress.last_error = progress.last_error or "deadline exceeded"
                return self._failed(agent, progress)
            if not self._observe(agent.name, guard, guard.breaker.allow):
                self._events.circuit_rejected(agent=agent.name)
                progress.last_error = "circuit open: the agent keeps failing, not called"
                return self._failed(agent, progress)
            progress.attempts += 1
            try:
                reply = await self._attempt(agent, envelope, trace, remaining, progress, guard)
            except AgentError as exc:
                delay = self._retry_delay(agent.name, progress, exc, deadline, guard)
                if delay is None:
                    return self._failed(agent, progress, exc.response)
                self._events.retry(agent=agent.name, delay_s=delay)
                await self._sleep(delay)
                continue
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
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": envelope.log_id,
            "traceparent": span.traceparent,
        }
        timeout = min(agent.timeout_s or self._agent_timeout_s, remaining)
        started = time.perf_counter()
        guard.budget.record_call()
        try:
            async with self.agent_calls:
                reply = await self._client.call(agent, envelope.body, headers, timeout)
        except AgentError as exc:
            progress.last_error = exc.message
            progress.last_status = exc.status_code
            retryable = isinstance(exc, RetryableAgentError)
            outcome = guard.breaker.failure if retryable else guard.breaker.success
            self._observe(agent.name, guard, outcome)
            self._attempted(agent, progress, span, started, exc, retryable)
            raise
        except BaseException:
            guard.breaker.release()  # cancelled mid-attempt: no verdict on the agent
            raise
        self._observe(agent.name, guard, guard.breaker.success)
        self._attempted(agent, progress, span, started, None, False, reply.status_code)
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
            progress.attempts, deadline - time.perf_counter(), exc.retry_after_s, self._rand
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
        return AgentResult(
            agent=agent.name,
            ok=False,
            status_code=progress.last_status,
            attempts=progress.attempts,
            latency_ms=(time.perf_counter() - progress.started) * 1000,
            response=response,
            error=progress.last_error,
        )
