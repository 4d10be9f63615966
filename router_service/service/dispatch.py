"""Bounded fan-out to agents in one of three modes, with retries inside one deadline."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from router_service.domain.errors import AgentError, RetryableAgentError
from router_service.domain.outcome import AgentResult
from router_service.domain.retry import RetryPolicy
from router_service.domain.routing import AgentSpec, Mode, Plan
from router_service.observability.tracing import TraceContext
from router_service.service.ports import AgentClient, Events

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
        sleep: Sleep = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._events = events
        self._policy = policy
        self._agent_timeout_s = agent_timeout_s
        self._fanout_concurrency = fanout_concurrency
        self.agent_calls = asyncio.Semaphore(global_concurrency)
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

    async def call_with_retries(
        self,
        agent: AgentSpec,
        envelope: Envelope,
        trace: TraceContext,
        deadline: float,
        progress: _Progress,
    ) -> AgentResult:
        progress.started = time.perf_counter()
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                progress.last_error = progress.last_error or "deadline exceeded"
                return self._failed(agent, progress)
            progress.attempts += 1
            span = trace.child()
            timeout = min(agent.timeout_s or self._agent_timeout_s, remaining)
            headers = {
                "Content-Type": "application/json",
                "Idempotency-Key": envelope.log_id,
                "traceparent": span.traceparent,
            }
            attempt_started = time.perf_counter()
            try:
                async with self.agent_calls:
                    reply = await self._client.call(agent, envelope.body, headers, timeout)
            except AgentError as exc:
                progress.last_error = exc.message
                progress.last_status = exc.status_code
                retryable = isinstance(exc, RetryableAgentError)
                self._attempted(agent, progress, span, attempt_started, exc, retryable)
                if not retryable:
                    return self._failed(agent, progress, exc.response)
                delay = self._policy.next_delay(
                    progress.attempts, deadline - time.perf_counter(), exc.retry_after_s, self._rand
                )
                if delay is None:
                    return self._failed(agent, progress, exc.response)
                self._events.retry(agent=agent.name, delay_s=delay)
                await self._sleep(delay)
                continue
            self._attempted(agent, progress, span, attempt_started, None, False, reply.status_code)
            return AgentResult(
                agent=agent.name,
                ok=True,
                status_code=reply.status_code,
                attempts=progress.attempts,
                latency_ms=(time.perf_counter() - progress.started) * 1000,
                response=reply.body,
            )

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
