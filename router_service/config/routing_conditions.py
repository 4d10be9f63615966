"""The routing file's ``rules``: each rule's id, kind and condition (``when``), validated into
the domain's classifier. The condition language is drawn in ``routing_file.py``'s docstring."""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

from router_service.config.yaml_doc import (
    Doc,
    YamlPath,
    bool_of,
    format_path,
    list_of,
    mapping_of,
    number_of,
    string_of,
    type_name,
)
from router_service.domain.classify import (
    DEFAULT_RULE,
    AllOf,
    AnyOf,
    Classifier,
    Compare,
    Comparison,
    Condition,
    Equals,
    Exists,
    Keywords,
    Not,
    Prefix,
    Regex,
    Rule,
    is_finite_number,
)
from router_service.domain.safe_regex import check_flags

_STRING_OPS: Final = ("keywords", "regex", "prefix")
_VALUE_OPS: Final = ("equals", "exists", *(c.value for c in Comparison))
_COMBINATORS: Final = ("all", "any", "not")
_MODIFIERS: Final = {"flags": "regex", "case_sensitive": "prefix"}
_CONDITION_KEYS: Final = frozenset(("field", *_STRING_OPS, *_VALUE_OPS, *_COMBINATORS, *_MODIFIERS))
# Conditions nested deeper than this are refused: a person writes a few levels, and classify and
# explain walk them recursively (350 nested 'not's loaded, routed, and made every explain a 500).
MAX_CONDITION_DEPTH: Final = 32


def parse_rules(doc: Doc, value: object) -> Classifier:
    rules: list[Rule] = []
    first_seen: dict[str, int] = {}
    for i, item in enumerate(list_of(doc, value, ("rules",), allow_empty=True)):
        path: YamlPath = ("rules", i)
        spec = mapping_of(doc, item, path, required=("id", "kind", "when"))
        rule_id = string_of(doc, spec["id"], (*path, "id"))
        if rule_id == DEFAULT_RULE:
            raise doc.error((*path, "id"), f"rule id {DEFAULT_RULE!r} is reserved for no match")
        if rule_id in first_seen:
            where = format_path(("rules", first_seen[rule_id]))
            raise doc.error((*path, "id"), f"duplicate rule id {rule_id!r} (also {where})")
        first_seen[rule_id] = i
        kind = string_of(doc, spec["kind"], (*path, "kind"))
        when = _parse_condition(doc, spec["when"], (*path, "when"), MAX_CONDITION_DEPTH)
        rules.append(Rule(rule_id, kind, when))
    return Classifier(tuple(rules))


def _parse_condition(doc: Doc, value: object, path: YamlPath, room: int) -> Condition:
    """The condition at ``path``, with ``room`` levels of nesting left for it."""
    if room <= 0:
        raise doc.error(path, f"conditions nest at most {MAX_CONDITION_DEPTH} levels deep")
    if not isinstance(value, dict):
        raise doc.error(path, f"a condition is a mapping, got {type_name(value)}")
    for key in value:
        if key not in _CONDITION_KEYS:
            raise doc.error(path, f"unknown condition {key!r}", key=key)
    ops = [k for k in value if k not in _MODIFIERS and k != "field"]
    if not ops:
        raise doc.error(path, f"needs one of: {', '.join((*_STRING_OPS, *_VALUE_OPS))}")
    op = ops[0]
    if len(ops) > 1:
        hint = "; combine them with 'all'" if op not in _COMBINATORS else ""
        raise doc.error(path, f"one operator per condition, got {ops[0]!r} and {ops[1]!r}{hint}")
    for modifier, owner in _MODIFIERS.items():
        if modifier in value and op != owner:
            raise doc.error(path, f"{modifier!r} only goes with {owner!r}", key=modifier)
    if op in _COMBINATORS:
        if "field" in value:
            raise doc.error(path, f"'field' cannot sit beside {op!r}; move it inside", key="field")
        return _parse_combinator(doc, op, value[op], (*path, op), room - 1)
    field = _parse_field(doc, value, path)
    if op in _STRING_OPS:
        return _string_condition(doc, op, value, field, path)
    if field is None:
        raise doc.error(path, f"{op!r} needs a 'field'")
    return _value_condition(doc, op, value[op], field, (*path, op))


def _parse_field(doc: Doc, spec: dict[str, object], path: YamlPath) -> str | None:
    if "field" not in spec:
        return None
    field = string_of(doc, spec["field"], (*path, "field"))
    if not all(field.split(".")):
        raise doc.error((*path, "field"), f"empty segment in field path {field!r}")
    return field


def _parse_combinator(doc: Doc, op: str, value: object, path: YamlPath, room: int) -> Condition:
    if op == "not":
        return Not(_parse_condition(doc, value, path, room))
    items = list_of(doc, value, path)
    inner = tuple(_parse_condition(doc, item, (*path, i), room) for i, item in enumerate(items))
    return AllOf(inner) if op == "all" else AnyOf(inner)


def _string_condition(
    doc: Doc, op: str, spec: dict[str, object], field: str | None, path: YamlPath
) -> Condition:
    arg, at = spec[op], (*path, op)
    if op == "keywords":
        words = list_of(doc, arg, at)
        try:
            return Keywords(tuple(string_of(doc, w, (*at, i)) for i, w in enumerate(words)), field)
        except ValueError as exc:  # a NUL in a word (``domain/safe_regex.py``)
            raise doc.error(at, str(exc)) from exc
    if op == "prefix":
        case_sensitive = bool_of(doc, spec.get("case_sensitive", True), (*path, "case_sensitive"))
        return Prefix(string_of(doc, arg, at), field, case_sensitive)
    pattern = string_of(doc, arg, at)
    flags = spec.get("flags", "")
    if not isinstance(flags, str):
        raise doc.error((*path, "flags"), f"expected letters from 'ims', got {type_name(flags)}")
    try:
        check_flags(flags)
    except ValueError as exc:
        raise doc.error((*path, "flags"), str(exc)) from exc
    try:
        return Regex(pattern, field, flags)
    except ValueError as exc:  # RE2 cannot run it (``domain/safe_regex.py``)
        raise doc.error(at, f"invalid regex {pattern!r}: {exc}") from exc


def _value_condition(doc: Doc, op: str, arg: object, field: str, at: YamlPath) -> Condition:
    if op == "equals":
        return Equals(field, json_value(doc, arg, at))
    if op == "exists":
        return Exists(field, bool_of(doc, arg, at))
    return Compare(field, Comparison(op), number_of(doc, arg, at))


def json_value(doc: Doc, value: object, path: YamlPath) -> object:
    """A JSON-compatible copy, frozen (lists become tuples, mappings read-only)."""
    if value is None or isinstance(value, bool | str) or is_finite_number(value):
        return value
    if isinstance(value, list):
        return tuple(json_value(doc, v, (*path, i)) for i, v in enumerate(value))
    if isinstance(value, dict):
        return MappingProxyType({k: json_value(doc, v, (*path, k)) for k, v in value.items()})
    raise doc.error(path, f"expected a JSON value, got {type_name(value)} (quote it)")
