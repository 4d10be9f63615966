"""Which rule a payload matches, and why: the console's decision trace.

``explain`` runs the active routing version's rules now, in order, and reports each one it
looked at. It is the console's only source of traces: when the router records its own trace
(``POST /route/explain``), this function is the one place to switch to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from router_service.config.routing_source import RoutingVersion
from router_service.domain.classify import (
    DEFAULT_RULE,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Equals,
    Exists,
    Keywords,
    Not,
    Prefix,
    Regex,
)


@dataclass(frozen=True, slots=True)
class RuleStep:
    rule: str
    kind: str
    condition: str
    matched: bool


@dataclass(frozen=True, slots=True)
class Explanation:
    """The rules looked at until the first match, the outcome and the route it leads to."""

    version: str
    steps: tuple[RuleStep, ...]
    kind: str
    rule: str
    mode: str
    agents: tuple[str, ...]


def explain(version: RoutingVersion, payload: Mapping[str, Any]) -> Explanation:
    """Evaluate the rules of ``version`` top to bottom; the first match wins."""
    steps: list[RuleStep] = []
    kind, rule = "default", DEFAULT_RULE
    for candidate in version.config.classifier.rules:
        matched = candidate.condition.matches(payload)
        steps.append(RuleStep(candidate.id, candidate.kind, describe(candidate.condition), matched))
        if matched:
            kind, rule = candidate.kind, candidate.id
            break
    route = version.config.table.route_for(kind)
    return Explanation(version.version, tuple(steps), kind, rule, route.mode.value, route.agents)


def rule_condition(version: RoutingVersion, rule_id: str) -> str | None:
    """The condition of rule ``rule_id`` in ``version``, described; None if it has none."""
    for rule in version.config.classifier.rules:
        if rule.id == rule_id:
            return describe(rule.condition)
    return None


def _where(field: str | None) -> str:
    return f"{field} " if field else "any string "


def describe(condition: Condition) -> str:
    """One line a person reads, in the routing file's own terms."""
    match condition:
        case Keywords(words=words, field=field):
            return f"{_where(field)}has a keyword of {', '.join(words)}"
        case Regex(pattern=pattern, field=field, flags=flags):
            return f"{_where(field)}matches /{pattern}/{flags}"
        case Prefix(prefix=prefix, field=field):
            return f"{_where(field)}starts with {json.dumps(prefix)}"
        case Equals(field=field, value=value):
            return f"{field} equals {json.dumps(value)}"
        case Exists(field=field, present=present):
            return f"{field} {'exists' if present else 'is absent'}"
        case Compare(field=field, op=op, value=value):
            return f"{field} {op.value} {value:g}"
        case AllOf(conditions=parts):
            return "all of (" + "; ".join(describe(p) for p in parts) + ")"
        case AnyOf(conditions=parts):
            return "any of (" + "; ".join(describe(p) for p in parts) + ")"
        case Not(condition=inner):
            return f"not ({describe(inner)})"
    return type(condition).__name__  # pragma: no cover - the Condition union is closed
