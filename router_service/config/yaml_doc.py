"""YAML with line numbers, for the routing file and its tests: every value is read from PyYAML's
node graph with the line it sits on, so an error names the file, the YAML path and the line
(``routing.yaml: rules[2].when: unknown condition 'regexp' (line 14)``). Safe loading only; no
tags, no recursive aliases, a bounded number of nodes.

A plain (unquoted) value is read as JSON reads it: ``true``/``false`` and ``null`` (with YAML's
``True``, ``FALSE``, ``~`` and the empty value), and numbers in JSON's grammar; anything else is a
string. YAML 1.1, which PyYAML follows, turns ``NO`` into false, ``12:30`` into 750 and ``0123``
into 83, and reads ``2026-02-30`` as a date it then fails to build: a rule's ``equals: NO`` never
matched the ``"NO"`` its payloads carry, and its own tests, read the same way, passed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

import yaml

from router_service.domain.classify import is_finite_number
from router_service.domain.errors import ConfigError

# Aliases can make a small file expand enormously; a routing file never needs this many nodes.
MAX_NODES: Final = 100_000

_PLAIN_COLLECTION_TAGS: Final = frozenset(("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"))

YamlPath: TypeAlias = tuple[str | int, ...]


class _JsonScalars(yaml.SafeLoader):
    """PyYAML's safe loader, with plain scalars resolved as JSON reads them (module docstring)."""


_JsonScalars.yaml_implicit_resolvers = {}  # PyYAML's YAML 1.1 ones dropped, then ours added
for _tag, _pattern, _first in (
    ("bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("int", r"-?(?:0|[1-9][0-9]*)", "-0123456789"),
    ("float", r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?", "-0123456789"),
    ("merge", r"<<", "<"),  # merge keys, which the walker flattens
):
    _JsonScalars.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}", re.compile(f"^(?:{_pattern})$"), list(_first)
    )


# --- locating errors ---------------------------------------------------------------------------


def format_path(path: YamlPath) -> str:
    out = ""
    for key in path:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else key)
    return out


def config_error(source: str, path: YamlPath, message: str, line: int | None) -> ConfigError:
    where = format_path(path)
    text = f"{source}: {where}: {message}" if where else f"{source}: {message}"
    if line is not None:
        text += f" (line {line})"
    return ConfigError(text, details={"file": source, "path": where, "line": line})


@dataclass(frozen=True, slots=True)
class Doc:
    """The file name and where each YAML path sits, so errors can point at a line."""

    source: str
    lines: Mapping[YamlPath, int]  # path -> first line of its value
    key_lines: Mapping[YamlPath, int]  # path -> line of the key that names it

    def error(self, path: YamlPath, message: str, *, key: str | None = None) -> ConfigError:
        """An error at ``path``; with ``key``, the line is that key's (unknown/extra keys)."""
        line = self.key_lines.get((*path, key)) if key is not None else None
        probe = path
        while line is None and probe:
            line = self.lines.get(probe)
            probe = probe[:-1]
        return config_error(self.source, path, message, line or self.lines.get(()))


# --- YAML with line numbers --------------------------------------------------------------------


class _NodeWalker:
    """Builds plain values from PyYAML's node graph, recording each node's line on the way."""

    def __init__(self, loader: yaml.SafeLoader, source: str) -> None:
        self._loader = loader
        self._source = source
        self._budget = MAX_NODES
        self._open: set[int] = set()
        self.lines: dict[YamlPath, int] = {}
        self.key_lines: dict[YamlPath, int] = {}

    def _fail(self, path: YamlPath, message: str, node: yaml.Node) -> ConfigError:
        return config_error(self._source, path, message, node.start_mark.line + 1)

    def build(self, node: yaml.Node, path: YamlPath) -> object:
        self._budget -= 1
        if self._budget < 0:
            raise self._fail(path, f"more than {MAX_NODES} YAML nodes (alias expansion?)", node)
        self.lines[path] = node.start_mark.line + 1
        if isinstance(node, yaml.ScalarNode):
            try:
                return self._loader.construct_object(node)
            except ValueError as exc:  # an explicit tag's value: !!int abc, !!timestamp 2026-02-30
                raise self._fail(path, f"cannot read {node.value[:80]!r}: {exc}", node) from exc
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

    def _mapping(self, node: yaml.MappingNode, path: YamlPath) -> dict[str, object]:
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


def load_yaml(text: str, source: str) -> tuple[object, Doc]:
    loader = _JsonScalars(text)
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
    except RecursionError as exc:  # PyYAML's composer and our walk recurse per level
        raise ConfigError(f"{source}: invalid YAML: nested too deep to read") from exc
    finally:
        loader.dispose()
    return data, Doc(source, walker.lines, walker.key_lines)


# --- shapes ------------------------------------------------------------------------------------


def mapping_of(
    doc: Doc,
    value: object,
    path: YamlPath,
    *,
    required: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
) -> dict[str, object]:
    if not isinstance(value, dict):
        raise doc.error(path, f"expected a mapping, got {type_name(value)}")
    allowed = (*required, *optional)
    for key in value:
        if key not in allowed:
            raise doc.error(path, f"unknown key {key!r} (allowed: {', '.join(allowed)})", key=key)
    for key in required:
        if key not in value:
            raise doc.error(path, f"missing required key {key!r}")
    return value


def list_of(doc: Doc, value: object, path: YamlPath, *, allow_empty: bool = False) -> list[object]:
    if not isinstance(value, list):
        raise doc.error(path, f"expected a list, got {type_name(value)}")
    if not value and not allow_empty:
        raise doc.error(path, "must not be empty")
    return value


def string_of(doc: Doc, value: object, path: YamlPath) -> str:
    if not isinstance(value, str) or not value.strip():
        raise doc.error(path, f"expected a non-empty string, got {type_name(value)}")
    return value


def bool_of(doc: Doc, value: object, path: YamlPath) -> bool:
    if not isinstance(value, bool):
        raise doc.error(path, f"expected true or false, got {type_name(value)}")
    return value


def number_of(doc: Doc, value: object, path: YamlPath) -> float:
    if not is_finite_number(value):
        raise doc.error(path, f"expected a number, got {type_name(value)}")
    assert isinstance(value, int | float)  # narrowed by is_finite_number, for mypy
    return value


def type_name(value: object) -> str:
    if isinstance(value, str):
        return f"string {value!r}" if value.strip() else "an empty string"
    if value is None:
        return "null"
    if isinstance(value, bool | int | float):
        return f"{type(value).__name__} {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    return "a list" if isinstance(value, list) else type(value).__name__
