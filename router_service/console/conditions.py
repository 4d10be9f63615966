"""A rule's condition as one line a person reads, in the routing file's own terms.

The Rules page lists the rules with it, and a signal's page says why its rule matched. Tracing
a payload through the rules is the operations explain's job (``service/explain.py``), which the
Rules page's explain box shows.
"""

from __future__ import annotations

import json

from router_service.config.routing_source import RoutingVersion
from router_service.domain.classify import (
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
