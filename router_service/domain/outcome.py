"""Agent results folded into the signal's final status, response and dead letters.

An agent result is ``delivered`` (``ok``), ``failed`` or ``needs_input`` (an A2A task waiting for
input or auth). ``needs_input`` is not a success and is never retried, so for the fold it is a
failure whose dead letter names the task: the signal is ``dead_lettered`` unless another agent
delivered (``first_success``, ``fallback``, ``hedge``), and ``partial`` or ``dead_lettered`` in
``aggregate``. The full table is in docs/delivery.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from router_service.domain.routing import Mode


class Status(StrEnum):
    IN_PROGRESS = "in_progress"
    DELIVERED = "delivered"
    PARTIAL = "partial"
    DEAD_LETTERED = "dead_lettered"


FINAL_STATUSES = frozenset({Status.DELIVERED, Status.PARTIAL, Status.DEAD_LETTERED})


@dataclass(frozen=True, slots=True)
class AgentResult:
    """What happened at one agent that was actually called (all attempts together)."""

    agent: str
    ok: bool
    status_code: int | None
    attempts: int
    latency_ms: float
    response: Any = None
    error: str | None = None
    needs_input: bool = False
    task_id: str | None = None  # A2A: the task and its context, for needs_input
    context_id: str | None = None
    hedge: bool = False  # started by a hedge route because the previous agent was slow

    @property
    def status(self) -> str:
        return "delivered" if self.ok else "needs_input" if self.needs_input else "failed"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "agent": self.agent,
            "ok": self.ok,
            "status_code": self.status_code,
            "attempts": self.attempts,
            "latency_ms": round(self.latency_ms, 3),
            "response": self.response,
            "error": self.error,
        }
        # Present only when they apply, so plain HTTP results keep their shape.
        if self.needs_input:
            out.update(status="needs_input", task_id=self.task_id, context_id=self.context_id)
        if self.hedge:
            out["hedge"] = True
        return out


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """``agent`` is None when the whole signal is parked (first_success, fallback)."""

    agent: str | None
    error: str
    attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    response: Any
    results: tuple[AgentResult, ...]
    dead_letters: tuple[DeadLetter, ...]


def _error_summary(results: Sequence[AgentResult]) -> str:
    failed = [f"{r.agent}: {r.error}" for r in results if not r.ok]
    return "; ".join(failed) or "no agent answered"


def fold(mode: Mode, results: Sequence[AgentResult]) -> Outcome:
    ok = [r for r in results if r.ok]
    if mode is Mode.AGGREGATE:
        response = {r.agent: r.response if r.ok else None for r in results}
        failed = [r for r in results if not r.ok]
        status = Status.DELIVERED if not failed else Status.PARTIAL if ok else Status.DEAD_LETTERED
        letters = tuple(DeadLetter(r.agent, r.error or "failed", r.attempts) for r in failed)
        return Outcome(status, response, tuple(results), letters)
    if ok:
        return Outcome(Status.DELIVERED, ok[0].response, tuple(results), ())
    attempts = sum(r.attempts for r in results)
    letter = DeadLetter(None, _error_summary(results), attempts)
    return Outcome(Status.DEAD_LETTERED, None, tuple(results), (letter,))
