"""Classification: a payload becomes a *kind*, plus the id of the rule that decided it.

Rules are data: an ordered tuple of ``Rule(id, kind, condition)``; the first rule whose
condition matches wins, and a payload no rule matches is ``Classification("default",
"default")``. Everything that can be prepared (regexes, dotted paths, comparison functions) is
prepared when a condition is built, because ``Classifier.classify`` runs once per signal.

Conditions address a payload field by a dotted path (``ticket.priority``, ``items.0.name``):
integer segments index lists, and a path that does not resolve simply does not match. The string
conditions (``Keywords``, ``Regex``, ``Prefix``) look at every string leaf under their field, or
under the whole payload when no field is given, so ``{"message": "help me understand policy"}``
is caught without naming ``message``.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from enum import StrEnum
from typing import Any, Final, TypeAlias

from router_service.domain.safe_regex import (
    LEAF_SEPARATOR,
    Searches,
    compile_searches,
    compile_words,
)

DEFAULT_RULE: Final = "default"
# String leaves deeper than this are ignored: a hostile payload must not buy unbounded work.
MAX_SCAN_DEPTH: Final = 32

ABSENT: Final = object()  # what a path the payload does not have reads as (``value_at``)
_StringTest: TypeAlias = Callable[[str], object]
# (mapping key, list index or None) per dotted-path segment, split once at construction.
_Path: TypeAlias = tuple[tuple[str, int | None], ...]


_MAX_INDEX_DIGITS = 18  # no list is longer


def _compile_path(dotted: str) -> _Path:
    """Each segment, with its list index when it is ASCII digits (``str.isdigit`` also takes
    superscripts and other scripts' digits, which ``int`` refuses), short enough to index a list
    (``int`` refuses more than 4,300 digits)."""
    return tuple((seg, _index(seg)) for seg in dotted.split("."))


def _index(segment: str) -> int | None:
    digits = segment.isascii() and segment.isdigit() and len(segment) <= _MAX_INDEX_DIGITS
    return int(segment) if digits else None


def value_at(payload: Any, dotted: str) -> Any:
    """The value at a dotted path as conditions read it, or ``ABSENT`` (for explain)."""
    return _resolve(payload, _compile_path(dotted))


def _resolve(payload: Any, path: _Path) -> Any:
    """The value at ``path``, or ``ABSENT``; a digit segment is a key in a mapping."""
    value = payload
    for key, index in path:
        if isinstance(value, Mapping):
            value = value.get(key, ABSENT)
            if value is ABSENT:
                return ABSENT
        elif index is not None and isinstance(value, list | tuple) and index < len(value):
            value = value[index]
        else:
            return ABSENT
    return value


def _string_leaves(value: Any, into: list[str], depth: int) -> list[str]:
    """Every string leaf of ``value`` down to ``depth`` levels, in payload order."""
    if isinstance(value, str):
        into.append(value)
        return into
    if depth <= 0:
        return into
    if isinstance(value, Mapping):
        value = value.values()
    elif not isinstance(value, list | tuple):
        return into
    for item in value:  # numbers, nulls and empty containers hold no string: no call for them
        kind = type(item)
        if kind is str:
            into.append(item)
        elif kind is dict or kind is list:
            if item:
                _string_leaves(item, into, depth - 1)
        elif kind is not int and kind is not float and kind is not bool and item is not None:
            _string_leaves(item, into, depth - 1)  # another mapping or sequence type
    return into


class PayloadStrings:
    """The string leaves of one payload, gathered once for every rule that reads them (by the
    path a rule names, or all of them), and, joined, for the keyword rules. Each rule walked
    the payload itself: a body of 131,000 small numbers cost 230 ms against the shipped file,
    its six string rules each walking every value."""

    __slots__ = ("_joined", "_leaves", "_payload")

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self._payload = payload
        self._leaves: dict[_Path | None, list[str]] = {}
        self._joined: dict[_Path | None, str] = {}

    def leaves(self, path: _Path | None) -> list[str]:
        found = self._leaves.get(path)
        if found is None:
            root = self._payload if path is None else _resolve(self._payload, path)
            found = self._leaves[path] = _string_leaves(root, [], MAX_SCAN_DEPTH)
        return found

    def joined(self, path: _Path | None) -> str | None:
        """The leaves as one text (``LEAF_SEPARATOR`` between them); ``None`` when none."""
        text = self._joined.get(path)
        if text is None:
            leaves = self.leaves(path)
            if not leaves:
                return None
            text = self._joined[path] = LEAF_SEPARATOR.join(leaves)
        return text


def _any_leaf(strings: PayloadStrings, path: _Path | None, test: _StringTest) -> bool:
    # Plain loops rather than any(genexpr) here and in AllOf/AnyOf: this runs for every leaf of
    # every signal, and the loop measured about twice as fast on CPython 3.11.
    for text in strings.leaves(path):  # noqa: SIM110 - hot path, see above
        if test(text):
            return True
    return False


def _is_number(value: object) -> bool:
    # bool is an int subclass in Python but not a number in JSON.
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    """A JSON number that is not NaN or infinite (the only thing a comparison may take)."""
    # isfinite only on floats: it would overflow on a huge int, which is finite anyway.
    return math.isfinite(value) if isinstance(value, float) else _is_number(value)


def json_equal(a: object, b: object) -> bool:
    """Equality as JSON sees it: ``1 == 1.0`` but ``True != 1``, recursively."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _is_number(a) or _is_number(b):
        return _is_number(a) and _is_number(b) and a == b
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return a is None and b is None


@dataclass(frozen=True, slots=True)
class Keywords:
    """Any of ``words`` (whole words or phrases, any case) occurs in a string leaf."""

    words: tuple[str, ...]
    field: str | None = None
    _path: _Path | None = dc_field(init=False, repr=False, compare=False)
    _search: Callable[[str], str | None] = dc_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.words or not all(w.strip() for w in self.words):
            raise ValueError("keywords must be a non-empty set of non-empty strings")
        object.__setattr__(self, "_path", _compile_path(self.field) if self.field else None)
        object.__setattr__(self, "_search", compile_words(self.words))

    def matches(self, payload: Mapping[str, Any], strings: PayloadStrings | None = None) -> bool:
        # One search of every leaf at once: a search has its own cost, and a payload may hold
        # many thousands of short strings (``LEAF_SEPARATOR`` keeps their words apart).
        text = (strings or PayloadStrings(payload)).joined(self._path)
        return text is not None and self._search(text) is not None

    def hit(self, text: str) -> str | None:
        """The words as they occur in ``text`` (the first occurrence), or ``None``."""
        return self._search(text)


@dataclass(frozen=True, slots=True)
class Regex:
    """The pattern's search succeeds on a string leaf; ``flags`` is letters from ``ims``.
    RE2, in time linear in the leaf (``safe_regex``); ``ValueError`` for a pattern it cannot
    run."""

    pattern: str
    field: str | None = None
    flags: str = ""
    _path: _Path | None = dc_field(init=False, repr=False, compare=False)
    _searches: Searches = dc_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        searches = compile_searches(self.pattern, self.flags)
        object.__setattr__(self, "_path", _compile_path(self.field) if self.field else None)
        object.__setattr__(self, "_searches", searches)

    def matches(self, payload: Mapping[str, Any], strings: PayloadStrings | None = None) -> bool:
        return _any_leaf(strings or PayloadStrings(payload), self._path, self._searches.test)

    def hit(self, text: str) -> str | None:
        """The text the pattern's first match in ``text`` covers, or ``None``."""
        return self._searches.hit(text)


@dataclass(frozen=True, slots=True)
class Prefix:
    """A string leaf starts with ``prefix``."""

    prefix: str
    field: str | None = None
    case_sensitive: bool = True
    _path: _Path | None = dc_field(init=False, repr=False, compare=False)
    _test: _StringTest = dc_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        test: _StringTest
        if self.case_sensitive:
            prefix = self.prefix
            test = lambda s: s.startswith(prefix)  # noqa: E731 - built once, not per call
        else:
            # An anchored IGNORECASE match avoids lower-casing every candidate string.
            test = re.compile(re.escape(self.prefix), re.IGNORECASE).match
        object.__setattr__(self, "_path", _compile_path(self.field) if self.field else None)
        object.__setattr__(self, "_test", test)

    def matches(self, payload: Mapping[str, Any], strings: PayloadStrings | None = None) -> bool:
        return _any_leaf(strings or PayloadStrings(payload), self._path, self._test)

    def hit(self, text: str) -> str | None:
        """The start of ``text`` the prefix matched, as routing matches it, or ``None``."""
        found = self._test(text)
        if not found:
            return None
        return found.group(0) if isinstance(found, re.Match) else self.prefix


@dataclass(frozen=True, slots=True)
class Equals:
    """The field holds ``value`` (JSON equality: ``true`` is not ``1``)."""

    field: str
    value: Any
    _path: _Path = dc_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_path", _compile_path(self.field))

    def matches(self, payload: Mapping[str, Any], strings: PayloadStrings | None = None) -> bool:
        found = _resolve(payload, self._path)
        return found is not ABSENT and json_equal(found, self.value)


@dataclass(frozen=True, slots=True)
class Exists:
    """The path resolves (to anything, ``null`` included) iff ``present``."""

    field: str
    present: bool = True
    _path: _Path = dc_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_path", _compile_path(self.field))

    def matches(self, payload: Mapping[str, Any], strings: PayloadStrings | None = None) -> bool:
        return (_resolve(payload, self._path) is not ABSENT) is self.present


class Comparison(StrEnum):
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"


_COMPARATORS: Final[Mapping[Comparison, Callable[[Any, Any], bool]]] = {
    Comparison.GT: operator.gt,
    Comparison.GTE: operator.ge,
    Comparison.LT: operator.lt,
    Comparison.LTE: operator.le,
}


@dataclass(frozen=True, slots=True)
class Compare:
    """``field <op> value`` for numbers only: strings and booleans never match."""

    field: str
    op: Comparison
    value: float
    _path: _Path = dc_field(init=False, repr=False, compare=False)
    _apply: Callable[[Any, Any], bool] = dc_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not is_finite_number(self.value):
            raise ValueError(f"{self.op} needs a finite number, got {self.value!r}")
        object.__setattr__(self, "_path", _compile_path(self.field))
        object.__setattr__(self, "_apply", _COMPARATORS[Comparison(self.op)])

    def matches(self, payload: Mapping[str, Any], strings: PayloadStrings | None = None) -> bool:
        found = _resolve(payload, self._path)
        return _is_number(found) and self._apply(found, self.value)


@dataclass(frozen=True, slots=True)
class AllOf:
    conditions: tuple[Condition, ...]

    def matches(self, payload: Mapping[str, Any], strings: PayloadStrings | None = None) -> bool:
        strings = strings or PayloadStrings(payload)
        for condition in self.conditions:  # noqa: SIM110 - hot path, see _any_leaf
            if not condition.matches(payload, strings):
                return False
        return True


@dataclass(frozen=True, slots=True)
class AnyOf:
    conditions: tuple[Condition, ...]

    def matches(self, payload: Mapping[str, Any], strings: PayloadStrings | None = None) -> bool:
        strings = strings or PayloadStrings(payload)
        for condition in self.conditions:  # noqa: SIM110 - hot path, see _any_leaf
            if condition.matches(payload, strings):
                return True
        return False


@dataclass(frozen=True, slots=True)
class Not:
    condition: Condition

    def matches(self, payload: Mapping[str, Any], strings: PayloadStrings | None = None) -> bool:
        return not self.condition.matches(payload, strings)


# A closed set: the routing file can only build these, and the docs list exactly these.
Condition: TypeAlias = Keywords | Regex | Prefix | Equals | Exists | Compare | AllOf | AnyOf | Not


@dataclass(frozen=True, slots=True)
class Classification:
    kind: str
    rule: str


DEFAULT_CLASSIFICATION: Final = Classification(kind="default", rule=DEFAULT_RULE)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    kind: str
    condition: Condition


@dataclass(frozen=True, slots=True)
class Classifier:
    """Ordered rules; the first match wins, no match is the ``default`` classification."""

    rules: tuple[Rule, ...]
    # Outcomes are built once so a match returns a shared object instead of allocating.
    _table: tuple[tuple[Condition, Classification], ...] = dc_field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        ids = [r.id for r in self.rules]
        if DEFAULT_RULE in ids:
            raise ValueError(f"rule id {DEFAULT_RULE!r} is reserved for the no-match outcome")
        if len(set(ids)) != len(ids):
            raise ValueError("rule ids must be unique")
        table = tuple((r.condition, Classification(r.kind, r.id)) for r in self.rules)
        object.__setattr__(self, "_table", table)

    @property
    def kinds(self) -> frozenset[str]:
        """Every kind a rule can produce (``default`` is always possible too)."""
        return frozenset(r.kind for r in self.rules)

    def classify(
        self, payload: Mapping[str, Any], strings: PayloadStrings | None = None
    ) -> Classification:
        """``strings``: the payload's, when another classifier read them already (a shadow)."""
        strings = strings or PayloadStrings(payload)
        for condition, outcome in self._table:
            if condition.matches(payload, strings):
                return outcome
        return DEFAULT_CLASSIFICATION
