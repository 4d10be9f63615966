"""Routing-file tests: a payload and what it must become (kind, rule, agents), checked like code.

A case is run through the same trace as ``/route/explain`` (``explain.py``), so a failure can
say why: which rule won instead, and why the expected one did not match.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from router_service.domain.classify import Classifier
from router_service.domain.explain import Decision, explain
from router_service.domain.routing import RoutingTable


@dataclass(frozen=True, slots=True)
class RoutingCase:
    """What ``payload`` must become; ``None`` expectations are not checked (one at least is)."""

    name: str
    payload: Mapping[str, Any]
    kind: str | None = None
    rule: str | None = None
    agents: tuple[str, ...] | None = None
    source: str = ""  # "file:line", for messages


@dataclass(frozen=True, slots=True)
class Mismatch:
    field: str  # kind, rule or agents
    expected: Any
    got: Any


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: RoutingCase
    decision: Decision
    mismatches: tuple[Mismatch, ...]

    @property
    def passed(self) -> bool:
        return not self.mismatches

    def because(self) -> list[str]:
        """Why the decision differs: the rule that won, and why the expected rule did not."""
        reasons = []
        rules = {r.id: r for r in self.decision.rules}
        won = rules.get(self.decision.rule)
        if won is not None:
            reasons.append(f"{won.id} won: {won.condition.reason()}")
        else:
            reasons.append("no rule matched, so the kind is default")
        wanted = rules.get(self.case.rule or "")
        if wanted is not None and not wanted.won:
            state = "matched but an earlier rule won" if wanted.matched else "did not match"
            reasons.append(f"{wanted.id} {state}: {wanted.condition.reason()}")
        return reasons

    def describe(self) -> str:
        """A readable diff: one ``expected … got …`` line per mismatch, then the reasons."""
        lines = [f"case {self.case.name!r} ({self.case.source}):"]
        for m in self.mismatches:
            lines.append(f"  expected {m.field} {_show(m.expected)}, got {m.field} {_show(m.got)}")
        lines.extend(f"    because {reason}" for reason in self.because())
        return "\n".join(lines)


def run_case(classifier: Classifier, table: RoutingTable, case: RoutingCase) -> CaseResult:
    decision = explain(classifier, table, case.payload)
    got_agents = tuple(decision.plan.agent_names)
    mismatches = []
    if case.kind is not None and case.kind != decision.kind:
        mismatches.append(Mismatch("kind", case.kind, decision.kind))
    if case.rule is not None and case.rule != decision.rule:
        mismatches.append(Mismatch("rule", case.rule, decision.rule))
    if case.agents is not None and case.agents != got_agents:
        mismatches.append(Mismatch("agents", list(case.agents), list(got_agents)))
    return CaseResult(case, decision, tuple(mismatches))


def run_cases(
    classifier: Classifier, table: RoutingTable, cases: Sequence[RoutingCase]
) -> list[CaseResult]:
    return [run_case(classifier, table, case) for case in cases]


def _show(value: Any) -> str:
    return "[" + ", ".join(value) + "]" if isinstance(value, list) else str(value)
