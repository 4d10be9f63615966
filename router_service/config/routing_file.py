"""The routing file: YAML in, validated and frozen domain objects out, once at start-up.

Shape (``routing.yaml`` next to this module is the shipped, commented example)::

    agents:                       # required, non-empty list
      - name: policy-agent        # unique, [a-z0-9][a-z0-9_.-]*
        url: http://127.0.0.1:9100/agents/policy-agent   # http(s) with a host
        timeout_ms: 1000          # optional per-attempt timeout override, > 0
        protocol: http            # optional: http (default) or a2a (JSON-RPC endpoint URL)
        a2a_version: "1.0"        # optional, a2a only: "1.0" (default) or "0.3"
    rules:                        # optional list; evaluated in order, first match wins
      - id: emergency-keywords    # unique, non-empty; "default" is reserved
        kind: emergency           # non-empty
        when: {keywords: [emergency, outage, "on fire", sev1]}
    routes:                       # kind -> route; a "default" route is required
      emergency: {agents: [oncall-agent, support-agent], mode: aggregate}
      default: {agents: [general-agent], mode: fallback}   # mode defaults to first_success
      slow: {agents: [a, b], hedge: {after: p95, max_extra: 0.05}}   # or mode: hedge;
                                  # hedge: {after_ms: 50} waits a fixed delay instead

A condition (``when``) is a mapping with an optional ``field`` (dotted path, ``items.0.name``)
and exactly one operator:

=================  ==========================================================================
``keywords``       non-empty list of words/phrases; whole words, any case
``regex``          a pattern for ``re.search``; optional ``flags`` (letters from ``ims``)
``prefix``         a string; optional ``case_sensitive`` (default true)
``equals``         any JSON value (``true`` is not ``1``)                      needs ``field``
``exists``         true / false                                                needs ``field``
``gt gte lt lte``  a number; only numeric payload values match                 needs ``field``
``all`` ``any``    a non-empty list of conditions (no ``field`` beside them)
``not``            one condition (no ``field`` beside it)
=================  ==========================================================================

Without ``field``, ``keywords``/``regex``/``prefix`` look at every string in the payload.
Unknown keys are errors everywhere. A kind that rules produce but no route names is allowed: it
falls to ``default`` (``RoutingConfig.unrouted_kinds`` lists them). Every error is a
``ConfigError`` naming the file, the YAML path and the line, e.g.
``routing.yaml: rules[2].when: unknown condition 'regexp' (line 14)``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, TypeAlias
from urllib.parse import urlsplit

import yaml

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
    regex_flags,
)
from router_service.domain.errors import ConfigError
from router_service.domain.routing import (
    A2A_VERSIONS,
    DEFAULT_KIND,
    AgentProtocol,
    AgentSpec,
    HedgePolicy,
    Mode,
    Route,
    RoutingTable,
)
from router_service.domain.routing_tests import RoutingCase

DEFAULT_ROUTING_FILE: Final = Path(__file__).with_name("routing.yaml")

_AGENT_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_STRING_OPS: Final = ("keywords", "regex", "prefix")
_VALUE_OPS: Final = ("equals", "exists", *(c.value for c in Comparison))
_COMBINATORS: Final = ("all", "any", "not")
_MODIFIERS: Final = {"flags": "regex", "case_sensitive": "prefix"}
_CONDITION_KEYS: Final = frozenset(("field", *_STRING_OPS, *_VALUE_OPS, *_COMBINATORS, *_MODIFIERS))
# Aliases can make a small file expand enormously; a routing file never needs this many nodes.
_MAX_NODES: Final = 100_000

_PLAIN_COLLECTION_TAGS: Final = frozenset(("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"))

_YamlPath: TypeAlias = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class RoutingConfig:
    source: str
    agents: Mapping[str, AgentSpec]
    classifier: Classifier
    table: RoutingTable
    # The file's ``tests:`` (and its sibling ``*.tests.yaml``'s): see ``routing_cases.py``.
    tests: tuple[RoutingCase, ...] = ()

    @property
    def unrouted_kinds(self) -> frozenset[str]:
        """Kinds some rule produces that have no route of their own (they use ``default``)."""
        return self.classifier.kinds - self.table.routes.keys()


def load_routing_config(path: str | Path) -> RoutingConfig:
    """Read and validate a routing file; every problem is a ``ConfigError`` naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read routing file: {exc}") from exc
    from router_service.config.routing_cases import with_sibling_cases  # imports this module

    return with_sibling_cases(parse_routing_config(text, str(path)), path)


def parse_routing_config(text: str, source: str) -> RoutingConfig:
    """Validate routing YAML; ``source`` names the file in error messages."""
    data, doc = _load_yaml(text, source)
    top = _mapping(doc, data, (), required=("agents", "routes"), optional=("rules", "tests"))
    agents = MappingProxyType(_parse_agents(doc, top["agents"]))
    classifier = _parse_rules(doc, top.get("rules", []))
    routes = MappingProxyType(_parse_routes(doc, top["routes"], agents))
    config = RoutingConfig(
        source=source,
        agents=agents,
        classifier=classifier,
        table=RoutingTable(agents=agents, routes=routes),
    )
    if "tests" not in top:
        return config
    from router_service.config.routing_cases import parse_cases  # imports this module

    return dataclasses.replace(config, tests=parse_cases(doc, top["tests"], config))


# --- locating errors ---------------------------------------------------------------------------


def _format_path(path: _YamlPath) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


def _config_error(source: str, path: _YamlPath, message: str, line: int | None) -> ConfigError:
    where = _format_path(path)
    text = f"{source}: {where}: {message}" if where else f"{source}: {message}"
    if line is not None:
        text += f" (line {line})"
    return ConfigError(text, details={"file": source, "path": where, "line": line})


@dataclass(frozen=True, slots=True)
class _Doc:
    """The file name and where each YAML path sits, so errors can point at a line."""

    source: str
    lines: Mapping[_YamlPath, int]  # path -> first line of its value
    key_lines: Mapping[_YamlPath, int]  # path -> line of the key that names it

    def error(self, path: _YamlPath, message: str, *, key: str | None = None) -> ConfigError:
        """An error at ``path``; with ``key``, the line is that key's (unknown/extra keys)."""
        line = self.key_lines.get((*path, key)) if key is not None else None
        probe = path
        while line is None and probe:
            line = self.lines.get(probe)
            probe = probe[:-1]
        return _config_error(self.source, path, message, line or self.lines.get(()))


# --- YAML with line numbers --------------------------------------------------------------------


class _NodeWalker:
    """Builds plain values from PyYAML's node graph, recording each node's line on the way."""

    def __init__(self, loader: yaml.SafeLoader, source: str) -> None:
        self._loader = loader
        self._source = source
        self._budget = _MAX_NODES
        self._open: set[int] = set()
        self.lines: dict[_YamlPath, int] = {}
        self.key_lines: dict[_YamlPath, int] = {}

    def _fail(self, path: _YamlPath, message: str, node: yaml.Node) -> ConfigError:
        return _config_error(self._source, path, message, node.start_mark.line + 1)

    def build(self, node: yaml.Node, path: _YamlPath) -> object:
        self._budget -= 1
        if self._budget < 0:
            raise self._fail(path, f"more than {_MAX_NODES} YAML nodes (alias expansion?)", node)
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            return self._loader.construct_object(node)
        if node.tag not in _PLAIN_COLLECTION_TAGS:
            # Collections are built here, not by PyYAML, so its refusal of tags must be redone.
            raise self._fail(path, f"unsupported YAML tag {node.tag!r}", node)
        if id(node) in self._open:
            raise self._fail(path, "recursive YAML alias", node)
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        finally:
            self._open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: _YamlPath) -> dict[str, object]:
        written = {id(key_node) for key_node, _ in node.value}
        # Resolves "<<" merge keys: merged pairs come first, and later pairs override them.
        self._loader.flatten_mapping(node)
        result: dict[str, object] = {}
        seen_written: set[str] = set()
        for key_node, value_node in node.value:
            key = self._loader.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise self._fail(path, f"keys must be strings, got {key!r} (quote it)", key_node)
            if id(key_node) in written:
                # PyYAML silently keeps the last of two equal keys; in a config that hides typos.
                if key in seen_written:
                    raise self._fail(path, f"duplicate key {key!r}", key_node)
                seen_written.add(key)
            self.key_lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, (*path, key))
        return result


def _load_yaml(text: str, source: str) -> tuple[object, _Doc]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError(f"{source}: the file is empty; expected 'agents', 'rules', 'routes'")
        walker = _NodeWalker(loader, source)
        data = walker.build(node, ())
    except yaml.MarkedYAMLError as exc:
        problem = ": ".join(p for p in (exc.context, exc.problem) if p) or "syntax error"
        mark = exc.problem_mark or exc.context_mark
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{source}: invalid YAML: {problem}{line}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {exc}") from exc
    finally:
        loader.dispose()
    return data, _Doc(source, walker.lines, walker.key_lines)


# --- shapes ------------------------------------------------------------------------------------


def _mapping(
    doc: _Doc,
    value: object,
    path: _YamlPath,
    *,
    required: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
) -> dict[str, object]:
    if not isinstance(value, dict):
        raise doc.error(path, f"expected a mapping, got {_type_name(value)}")
    allowed = (*required, *optional)
    for key in value:
        if key not in allowed:
            raise doc.error(path, f"unknown key {key!r} (allowed: {', '.join(allowed)})", key=key)
    for key in required:
        if key not in value:
            raise doc.error(path, f"missing required key {key!r}")
    return value


def _list(doc: _Doc, value: object, path: _YamlPath, *, allow_empty: bool = False) -> list[object]:
    if not isinstance(value, list):
        raise doc.error(path, f"expected a list, got {_type_name(value)}")
    if not value and not allow_empty:
        raise doc.error(path, "must not be empty")
    return value


def _string(doc: _Doc, value: object, path: _YamlPath) -> str:
    if not isinstance(value, str) or not value.strip():
        raise doc.error(path, f"expected a non-empty string, got {_type_name(value)}")
    return value


def _bool(doc: _Doc, value: object, path: _YamlPath) -> bool:
    if not isinstance(value, bool):
        raise doc.error(path, f"expected true or false, got {_type_name(value)}")
    return value


def _number(doc: _Doc, value: object, path: _YamlPath) -> float:
    if not is_finite_number(value):
        raise doc.error(path, f"expected a number, got {_type_name(value)}")
    assert isinstance(value, int | float)  # narrowed by is_finite_number, for mypy
    return value


def _type_name(value: object) -> str:
    if isinstance(value, str):
        return f"string {value!r}" if value.strip() else "an empty string"
    if value is None:
        return "null"
    if isinstance(value, bool | int | float):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    return "a list" if isinstance(value, list) else type(value).__name__


# --- agents ------------------------------------------------------------------------------------


def _parse_agents(doc: _Doc, value: object) -> dict[str, AgentSpec]:
    agents: dict[str, AgentSpec] = {}
    for i, item in enumerate(_list(doc, value, ("agents",))):
        path: _YamlPath = ("agents", i)
        spec = _mapping(
            doc,
            item,
            path,
            required=("name", "url"),
            optional=("timeout_ms", "protocol", "a2a_version"),
        )
        name = _string(doc, spec["name"], (*path, "name"))
        if not _AGENT_NAME.fullmatch(name):
            raise doc.error((*path, "name"), f"invalid agent name {name!r} ([a-z0-9][a-z0-9_.-]*)")
        if name in agents:
            raise doc.error((*path, "name"), f"duplicate agent name {name!r}")
        timeout_s = None
        if "timeout_ms" in spec:
            timeout_ms = _number(doc, spec["timeout_ms"], (*path, "timeout_ms"))
            if timeout_ms <= 0:
                raise doc.error((*path, "timeout_ms"), f"must be positive, got {timeout_ms!r}")
            timeout_s = timeout_ms / 1000
        url = _url(doc, spec["url"], (*path, "url"))
        protocol, version = _protocol(doc, spec, path)
        agents[name] = AgentSpec(
            name=name, url=url, timeout_s=timeout_s, protocol=protocol, a2a_version=version
        )
    return agents


def _protocol(
    doc: _Doc, spec: dict[str, object], path: _YamlPath
) -> tuple[AgentProtocol, str | None]:
    raw = spec.get("protocol", AgentProtocol.HTTP.value)
    protocols = {p.value: p for p in AgentProtocol}
    if not isinstance(raw, str) or raw not in protocols:
        allowed = ", ".join(protocols)
        raise doc.error((*path, "protocol"), f"unknown protocol {raw!r} (allowed: {allowed})")
    protocol = protocols[raw]
    if "a2a_version" not in spec:
        return protocol, "1.0" if protocol is AgentProtocol.A2A else None
    if protocol is not AgentProtocol.A2A:
        raise doc.error((*path, "a2a_version"), "a2a_version needs protocol: a2a")
    version = spec["a2a_version"]
    if version not in A2A_VERSIONS:  # a number 1.0 would be ambiguous: "1.0" must be quoted
        allowed = ", ".join(f'"{v}"' for v in A2A_VERSIONS)
        raise doc.error(
            (*path, "a2a_version"), f"unknown A2A version {version!r} (allowed: {allowed})"
        )
    assert isinstance(version, str)
    return protocol, version


def _url(doc: _Doc, value: object, path: _YamlPath) -> str:
    url = _string(doc, value, path)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise doc.error(path, f"invalid url {url!r}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or url != url.strip():
        raise doc.error(path, f"url must be http(s)://host/..., got {url!r}")
    return url


# --- rules and conditions ----------------------------------------------------------------------


def _parse_rules(doc: _Doc, value: object) -> Classifier:
    rules: list[Rule] = []
    first_seen: dict[str, int] = {}
    for i, item in enumerate(_list(doc, value, ("rules",), allow_empty=True)):
        path: _YamlPath = ("rules", i)
        spec = _mapping(doc, item, path, required=("id", "kind", "when"))
        rule_id = _string(doc, spec["id"], (*path, "id"))
        if rule_id == DEFAULT_RULE:
            raise doc.error((*path, "id"), f"rule id {DEFAULT_RULE!r} is reserved for no match")
        if rule_id in first_seen:
            where = _format_path(("rules", first_seen[rule_id]))
            raise doc.error((*path, "id"), f"duplicate rule id {rule_id!r} (also {where})")
        first_seen[rule_id] = i
        kind = _string(doc, spec["kind"], (*path, "kind"))
        rules.append(Rule(rule_id, kind, _parse_condition(doc, spec["when"], (*path, "when"))))
    return Classifier(tuple(rules))


def _parse_condition(doc: _Doc, value: object, path: _YamlPath) -> Condition:
    if not isinstance(value, dict):
        raise doc.error(path, f"a condition is a mapping, got {_type_name(value)}")
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
        return _parse_combinator(doc, op, value[op], (*path, op))
    field = _parse_field(doc, value, path)
    if op in _STRING_OPS:
        return _string_condition(doc, op, value, field, path)
    if field is None:
        raise doc.error(path, f"{op!r} needs a 'field'")
    return _value_condition(doc, op, value[op], field, (*path, op))


def _parse_field(doc: _Doc, spec: dict[str, object], path: _YamlPath) -> str | None:
    if "field" not in spec:
        return None
    field = _string(doc, spec["field"], (*path, "field"))
    if not all(field.split(".")):
        raise doc.error((*path, "field"), f"empty segment in field path {field!r}")
    return field


def _parse_combinator(doc: _Doc, op: str, value: object, path: _YamlPath) -> Condition:
    if op == "not":
        return Not(_parse_condition(doc, value, path))
    items = _list(doc, value, path)
    inner = tuple(_parse_condition(doc, item, (*path, i)) for i, item in enumerate(items))
    return AllOf(inner) if op == "all" else AnyOf(inner)


def _string_condition(
    doc: _Doc, op: str, spec: dict[str, object], field: str | None, path: _YamlPath
) -> Condition:
    arg, at = spec[op], (*path, op)
    if op == "keywords":
        words = _list(doc, arg, at)
        return Keywords(tuple(_string(doc, w, (*at, i)) for i, w in enumerate(words)), field)
    if op == "prefix":
        case_sensitive = _bool(doc, spec.get("case_sensitive", True), (*path, "case_sensitive"))
        return Prefix(_string(doc, arg, at), field, case_sensitive)
    pattern = _string(doc, arg, at)
    flags = spec.get("flags", "")
    if not isinstance(flags, str):
        raise doc.error((*path, "flags"), f"expected letters from 'ims', got {_type_name(flags)}")
    try:
        regex_flags(flags)
    except ValueError as exc:
        raise doc.error((*path, "flags"), str(exc)) from exc
    try:
        return Regex(pattern, field, flags)
    except re.error as exc:
        raise doc.error(at, f"invalid regex {pattern!r}: {exc}") from exc


def _value_condition(doc: _Doc, op: str, arg: object, field: str, at: _YamlPath) -> Condition:
    if op == "equals":
        return Equals(field, _json_value(doc, arg, at))
    if op == "exists":
        return Exists(field, _bool(doc, arg, at))
    return Compare(field, Comparison(op), _number(doc, arg, at))


def _json_value(doc: _Doc, value: object, path: _YamlPath) -> object:
    """A JSON-compatible copy, frozen (lists become tuples, mappings read-only)."""
    if value is None or isinstance(value, bool | str) or is_finite_number(value):
        return value
    if isinstance(value, list):
        return tuple(_json_value(doc, v, (*path, i)) for i, v in enumerate(value))
    if isinstance(value, dict):
        return MappingProxyType({k: _json_value(doc, v, (*path, k)) for k, v in value.items()})
    raise doc.error(path, f"expected a JSON value, got {_type_name(value)} (quote it)")


# --- routes ------------------------------------------------------------------------------------


def _parse_routes(doc: _Doc, value: object, agents: Mapping[str, AgentSpec]) -> dict[str, Route]:
    if not isinstance(value, dict):
        raise doc.error(
            ("routes",), f"expected a mapping of kind -> route, got {_type_name(value)}"
        )
    routes = {kind: _parse_route(doc, kind, spec, agents) for kind, spec in value.items()}
    if DEFAULT_KIND not in routes:
        raise doc.error(
            ("routes",), f"a {DEFAULT_KIND!r} route is required (unrouted kinds use it)"
        )
    return routes


def _parse_route(doc: _Doc, kind: str, value: object, agents: Mapping[str, AgentSpec]) -> Route:
    path: _YamlPath = ("routes", kind)
    if not kind.strip():
        raise doc.error(path, "a route kind must be a non-empty string")
    spec = _mapping(doc, value, path, required=("agents",), optional=("mode", "hedge"))
    names: list[str] = []
    for i, item in enumerate(_list(doc, spec["agents"], (*path, "agents"))):
        name = _string(doc, item, (*path, "agents", i))
        if name not in agents:
            known = ", ".join(agents)
            raise doc.error((*path, "agents", i), f"unknown agent {name!r} (declared: {known})")
        if name in names:
            raise doc.error((*path, "agents", i), f"agent {name!r} listed twice")
        names.append(name)
    hedge = _hedge(doc, spec["hedge"], (*path, "hedge")) if "hedge" in spec else None
    default_mode = Mode.HEDGE if hedge is not None else Mode.FIRST_SUCCESS
    mode = _mode(doc, spec.get("mode", default_mode.value), path)
    if hedge is not None and mode is not Mode.HEDGE:
        raise doc.error((*path, "hedge"), f"hedge needs mode: hedge (or no mode), not {mode}")
    if mode is Mode.HEDGE and hedge is None:
        hedge = HedgePolicy()
    return Route(kind=kind, agents=tuple(names), mode=mode, hedge=hedge)


_PERCENTILE = re.compile(r"p(\d{1,2}(?:\.\d+)?)")


def _hedge(doc: _Doc, value: object, path: _YamlPath) -> HedgePolicy:
    spec = _mapping(doc, value, path, optional=("after_ms", "after", "max_extra"))
    if "after_ms" in spec and "after" in spec:
        raise doc.error(path, "give after_ms (a fixed delay) or after (a percentile), not both")
    max_extra = 0.05
    if "max_extra" in spec:
        max_extra = _number(doc, spec["max_extra"], (*path, "max_extra"))
        if not 0 <= max_extra <= 1:
            raise doc.error((*path, "max_extra"), f"must be in [0, 1], got {max_extra!r}")
    if "after_ms" in spec:
        after_ms = _number(doc, spec["after_ms"], (*path, "after_ms"))
        if after_ms <= 0:
            raise doc.error((*path, "after_ms"), f"must be positive, got {after_ms!r}")
        return HedgePolicy(after_s=after_ms / 1000, max_extra=max_extra)
    percentile = 0.95
    if "after" in spec:
        after = spec["after"]
        match = _PERCENTILE.fullmatch(after) if isinstance(after, str) else None
        if match is None or not 0 < float(match[1]) < 100:
            raise doc.error((*path, "after"), f"expected a percentile like p95, got {after!r}")
        percentile = float(match[1]) / 100
    return HedgePolicy(percentile=percentile, max_extra=max_extra)


def _mode(doc: _Doc, value: object, path: _YamlPath) -> Mode:
    modes = {m.value: m for m in Mode}
    if isinstance(value, str) and value in modes:
        return modes[value]
    allowed = ", ".join(modes)
    raise doc.error((*path, "mode"), f"unknown mode {value!r} (allowed: {allowed})")
