"""An ``AgentClient`` that plays a script per agent: replies, errors, attempts held until
released, attempts that take fake-clock time."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from router_service.domain.errors import AgentError
from router_service.domain.routing import AgentSpec
from router_service.domain.trace import TraceContext
from router_service.service.ports import AgentReply, Envelope
from tests.support.fake_clock import FakeClock


@dataclass(frozen=True, slots=True)
class Reply:
    body: Any = None
    status_code: int = 200


@dataclass(slots=True)
class Hold:
    """The attempt waits until ``release()`` (then plays ``then``), or until it is cancelled."""

    then: Reply | AgentError | Exception = field(default_factory=Reply)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.released.set()


@dataclass(frozen=True, slots=True)
class Takes:
    """The attempt lasts ``seconds`` of the fake clock (no real time), then plays ``then``."""

    seconds: float
    then: Reply | AgentError | Exception = field(default_factory=Reply)


Step = Reply | Hold | Takes | AgentError | Exception


@dataclass(frozen=True, slots=True)
class Call:
    agent: str
    log_id: str
    protocol: str
    timeout_s: float
    trace_id: str
    payload: Any


class FakeAgents:
    """``AgentClient`` for every protocol: each agent plays its script, one step per attempt;
    an agent with no step left answers 200 with ``{"agent": name}``."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self._clock = clock
        self._scripts: dict[str, list[Step]] = {}
        self.calls: list[Call] = []
        self.cancelled: list[str] = []  # agents whose attempt was cancelled mid-call
        self._called = asyncio.Condition()

    def script(self, agent: str, *steps: Step) -> None:
        self._scripts.setdefault(agent, []).extend(steps)

    def calls_to(self, agent: str) -> list[Call]:
        return [c for c in self.calls if c.agent == agent]

    async def called(self, agent: str, times: int = 1, within_s: float = 2.0) -> None:
        """Wait until ``agent`` was called ``times`` times (a condition, not a guess)."""
        async with asyncio.timeout(within_s), self._called:
            await self._called.wait_for(lambda: len(self.calls_to(agent)) >= times)

    async def deliver(
        self, agent: AgentSpec, envelope: Envelope, span: TraceContext, timeout_s: float
    ) -> AgentReply:
        self.calls.append(
            Call(
                agent.name,
                envelope.log_id,
                agent.protocol.value,
                timeout_s,
                span.trace_id,
                envelope.payload,
            )
        )
        async with self._called:
            self._called.notify_all()
        script = self._scripts.get(agent.name)
        step: Step = script.pop(0) if script else Reply({"agent": agent.name})
        return await self._play(agent.name, step)

    async def _play(self, agent: str, step: Step) -> AgentReply:
        if isinstance(step, Hold):
            try:
                await step.released.wait()
            except asyncio.CancelledError:
                self.cancelled.append(agent)
                raise
            return await self._play(agent, step.then)
        if isinstance(step, Takes):
            assert self._clock is not None, "Takes needs FakeAgents(clock)"
            self._clock.advance(step.seconds)
            return await self._play(agent, step.then)
        if isinstance(step, Exception):
            raise step
        await asyncio.sleep(0)  # an answer is never synchronous on a real wire
        return AgentReply(step.status_code, step.body)
