"""Why a payload got its kind: every rule in order, each condition with what it looked at.

The same rules as ``classify.py``, evaluated the slow way: nothing short-circuits, so the trace
shows every rule (a rule after the winner is reported as ``matched`` but ``shadowed``), and each
condition says the path it read, the value found there and the keyword or pattern that hit. It is
used by ``/route/explain``, ``router-service explain`` and the routing-file tests; the hot path
never runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from router_service.domain.classify import (
    ABSENT,
    DEFAULT_RULE,
    MAX_SCAN_DEPTH,
    AllOf,
    AnyOf,
    Classifier,
    Compare,
    Condition,
    Equals,
    Exists,
    Keywords,
    Not,
    PayloadStrings,
    Prefix,
    Regex,
    value_at,
)
from router_service.domain.routing import Mode, Plan, RoutingTable

MISSING = "<missing>"
# A found value is shown as is up to this many characters of its repr.
_SHOW_CHARS = 120


@dataclass(frozen=True, slots=True)
class ConditionTrace:
    """One condition: its operator, its argument, the path it read and what was there."""

    op: str
    matched: bool
    argument: Any = None
    field: str | None = None
    found: Any = None
    hit: str | None = None  # the keyword, pattern match or prefix that hit
    at: str | None = None  # where in the payload the hit was (dotted path)
    children: tuple[ConditionTrace, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op, "matched": self.matched}
        for name in ("argument", "field", "found", "hit", "at"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.children:
            out["children"] = [c.as_dict() for c in self.children]
        return out

    def reason(self) -> str:
        """One line: why it matched or not."""
        where = f" at {self.field}" if self.field else ""
        if self.op in ("all", "any", "not"):
            inner = "; ".join(c.reason() for c in self.children)
            return f"{self.op}({inner}) -> {'yes' if self.matched else 'no'}"
        if self.hit is not None:
            return f"{self.op} {self.hit!r} found at {self.at or 'payload'}"
        if self.op in ("keywords", "regex", "prefix") and self.found is None:
            return f"{self.op} {self.argument!r}: no string in the payload hit"
        found = "missing" if self.found == MISSING else f"found {self.found!r}"
        verdict = "matched" if self.matched else "no match"
        return f"{self.op} {self.argument!r}{where}: {found}, {verdict}"


@dataclass(frozen=True, slots=True)
class RuleTrace:
    id: str
    kind: str
    matched: bool
    won: bool
    condition: ConditionTrace

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "matched": self.matched,
            "won": self.won,
            "why": self.condition.reason(),
            "condition": self.condition.as_dict(),
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The whole trace: the rules, the winner and the plan it leads to."""

    rules: tuple[RuleTrace, ...]
    rule: str
    kind: str
    plan: Plan
    timeouts_s: Mapping[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rules": [r.as_dict() for r in self.rules],
            "rule": self.rule,
            "kind": self.kind,
            "plan": {
                "mode": self.plan.mode.value,
                "agents": [
                    {"name": a.name, "timeout_s": self.timeouts_s.get(a.name)}
                    for a in self.plan.agents
                ],
            },
        }


def explain(
    classifier: Classifier,
    table: RoutingTable,
    payload: Mapping[str, Any],
    mode: Mode | None = None,
    *,
    default_timeout_s: float | None = None,
) -> Decision:
    """Trace every rule; the first that matched wins, as ``Classifier.classify`` decides."""
    traces: list[RuleTrace] = []
    winner: tuple[str, str] | None = None
    strings = PayloadStrings(payload)  # gathered once for every rule, as ``classify`` does
    for rule in classifier.rules:
        trace = trace_condition(rule.condition, payload, strings)
        won = trace.matched and winner is None
        if won:
            winner = (rule.id, rule.kind)
        traces.append(RuleTrace(rule.id, rule.kind, trace.matched, won, trace))
    rule_id, kind = winner or (DEFAULT_RULE, "default")
    plan = table.plan(kind, rule_id, mode)
    timeouts = {a.name: a.timeout_s or default_timeout_s for a in plan.agents}
    return Decision(tuple(traces), rule_id, kind, plan, timeouts)


def trace_condition(
    condition: Condition, payload: Mapping[str, Any], strings: PayloadStrings | None = None
) -> ConditionTrace:
    """``strings``: the payload's, shared by every condition traced (each walked the payload
    itself: 120 ms for a 258 kB body of one-item lists against the shipped file's rules)."""
    strings = strings or PayloadStrings(payload)
    if isinstance(condition, AllOf | AnyOf):
        children = tuple(trace_condition(c, payload, strings) for c in condition.conditions)
        op = "all" if isinstance(condition, AllOf) else "any"
        matched = (all if op == "all" else any)(c.matched for c in children)
        return ConditionTrace(op, matched, children=children)
    if isinstance(condition, Not):
        inner = trace_condition(condition.condition, payload, strings)
        return ConditionTrace("not", not inner.matched, children=(inner,))
    if isinstance(condition, Keywords | Regex | Prefix):
        return _trace_string(condition, payload, strings)
    return _trace_value(condition, payload)


def _trace_value(
    condition: Equals | Exists | Compare, payload: Mapping[str, Any]
) -> ConditionTrace:
    found = value_at(payload, condition.field)
    shown = MISSING if found is ABSENT else _show(found)
    if isinstance(condition, Equals):
        op, argument = "equals", condition.value
    elif isinstance(condition, Exists):
        op, argument = "exists", condition.present
    else:
        op, argument = str(condition.op), condition.value
    return ConditionTrace(op, condition.matches(payload), argument, condition.field, found=shown)


def _trace_string(
    condition: Keywords | Regex | Prefix, payload: Mapping[str, Any], strings: PayloadStrings
) -> ConditionTrace:
    argument: Any
    if isinstance(condition, Keywords):
        op, argument = "keywords", list(condition.words)
    elif isinstance(condition, Regex):
        op, argument = "regex", condition.pattern
    else:
        op, argument = "prefix", condition.prefix
    # The classifier's own search of a leaf, so the trace cannot disagree with routing (a
    # prefix compared with ``str.lower`` folded a dotted capital I, a long s or a final sigma
    # otherwise than the classifier's ``re`` does).
    search: Callable[[str], str | None] = condition.hit
    root = payload if condition.field is None else value_at(payload, condition.field)
    if root is ABSENT:
        return ConditionTrace(op, False, argument, condition.field, found=MISSING)
    # The verdict as ``classify`` reaches it (keywords: one search of all the leaves); only a
    # match is looked for again, leaf by leaf, for its path and text.
    missed = not condition.matches(payload, strings)
    hit = None if missed else _first_hit(root, search, condition.field or "", MAX_SCAN_DEPTH)
    if hit is None:
        found = None if condition.field is None else _show(root)
        return ConditionTrace(op, False, argument, condition.field, found=found)
    at, text = hit
    return ConditionTrace(op, True, argument, condition.field, hit=text, at=at or None)


def _first_hit(value: Any, search: Any, at: str, depth: int) -> tuple[str, str] | None:
    """The first string leaf (in payload order) the test hits: its path and the text that hit.
    The path is spelled for the hit only: spelled for every value on the way, a long key over a
    long list copied the key once per item (0.8 s for one body within the limits)."""
    keys: list[object] = []
    found = _hit_under(value, search, keys, depth)
    if found is None:
        return None
    path = ".".join(map(str, keys))
    return (f"{at}.{path}" if at and path else at or path), found


def _hit_under(value: Any, search: Any, keys: list[object], depth: int) -> str | None:
    """The text that hit under ``value``; ``keys`` ends with the hit's path below it."""
    if isinstance(value, str):
        found = search(value)
        if found is None:
            return None
        return found if isinstance(found, str) else str(found.group(0))
    if depth <= 0:
        return None
    items: Any
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        keys.append(key)
        found = _hit_under(item, search, keys, depth - 1)
        if found is not None:
            return found
        keys.pop()
    return None


def _show(value: Any) -> Any:
    if isinstance(value, str | int | float | bool) or value is None:
        return (
            value
            if not isinstance(value, str) or len(value) <= _SHOW_CHARS
            else value[:_SHOW_CHARS] + "…"
        )
    try:
        text = repr(value)
    except RecursionError:  # a payload read without a depth limit (a file given to the CLI)
        return "(nested too deep to show)"
    return text if len(text) <= _SHOW_CHARS else text[:_SHOW_CHARS] + "…"
