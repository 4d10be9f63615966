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
``regex``          an RE2 pattern, searched (linear time; ``domain/safe_regex.py``);
                   optional ``flags`` (letters from ``ims``)
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
from typing import Final
from urllib.parse import urlsplit

from router_service.config.routing_conditions import parse_rules
from router_service.config.yaml_doc import (
    Doc,
    YamlPath,
    list_of,
    load_yaml,
    mapping_of,
    number_of,
    string_of,
    type_name,
)
from router_service.domain.classify import (
    Classifier,
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
    redacted_url,
)
from router_service.domain.routing_tests import RoutingCase

DEFAULT_ROUTING_FILE: Final = Path(__file__).with_name("routing.yaml")

_AGENT_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_.-]*")


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
    data, doc = load_yaml(text, source)
    top = mapping_of(doc, data, (), required=("agents", "routes"), optional=("rules", "tests"))
    agents = MappingProxyType(_parse_agents(doc, top["agents"]))
    classifier = parse_rules(doc, top.get("rules", []))
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


# --- agents ------------------------------------------------------------------------------------


def _parse_agents(doc: Doc, value: object) -> dict[str, AgentSpec]:
    agents: dict[str, AgentSpec] = {}
    for i, item in enumerate(list_of(doc, value, ("agents",))):
        path: YamlPath = ("agents", i)
        spec = mapping_of(
            doc,
            item,
            path,
            required=("name", "url"),
            optional=("timeout_ms", "protocol", "a2a_version"),
        )
        name = string_of(doc, spec["name"], (*path, "name"))
        if not _AGENT_NAME.fullmatch(name):
            raise doc.error((*path, "name"), f"invalid agent name {name!r} ([a-z0-9][a-z0-9_.-]*)")
        if name in agents:
            raise doc.error((*path, "name"), f"duplicate agent name {name!r}")
        timeout_s = None
        if "timeout_ms" in spec:
            timeout_ms = number_of(doc, spec["timeout_ms"], (*path, "timeout_ms"))
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
    doc: Doc, spec: dict[str, object], path: YamlPath
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


def _url(doc: Doc, value: object, path: YamlPath) -> str:
    url = string_of(doc, value, path)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise doc.error(path, f"invalid url{_shown(url, parsed=False)}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or url != url.strip():
        raise doc.error(path, f"url must be http(s)://host/..., got{_shown(url, parsed=True)}")
    return url


def _shown(url: str, *, parsed: bool) -> str:
    """The url as a load error shows it (the error reaches logs and the console): as written,
    unless it may carry credentials (a user or a query), then redacted, or left out when it
    does not parse."""
    if "@" not in url and "?" not in url:
        return f" {url!r}"
    return f" {redacted_url(url)!r}" if parsed else ""


# --- routes ------------------------------------------------------------------------------------


def _parse_routes(doc: Doc, value: object, agents: Mapping[str, AgentSpec]) -> dict[str, Route]:
    if not isinstance(value, dict):
        raise doc.error(("routes",), f"expected a mapping of kind -> route, got {type_name(value)}")
    routes = {kind: _parse_route(doc, kind, spec, agents) for kind, spec in value.items()}
    if DEFAULT_KIND not in routes:
        raise doc.error(
            ("routes",), f"a {DEFAULT_KIND!r} route is required (unrouted kinds use it)"
        )
    return routes


def _parse_route(doc: Doc, kind: str, value: object, agents: Mapping[str, AgentSpec]) -> Route:
    path: YamlPath = ("routes", kind)
    if not kind.strip():
        raise doc.error(path, "a route kind must be a non-empty string")
    spec = mapping_of(doc, value, path, required=("agents",), optional=("mode", "hedge"))
    names: list[str] = []
    for i, item in enumerate(list_of(doc, spec["agents"], (*path, "agents"))):
        name = string_of(doc, item, (*path, "agents", i))
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


def _hedge(doc: Doc, value: object, path: YamlPath) -> HedgePolicy:
    spec = mapping_of(doc, value, path, optional=("after_ms", "after", "max_extra"))
    if "after_ms" in spec and "after" in spec:
        raise doc.error(path, "give after_ms (a fixed delay) or after (a percentile), not both")
    max_extra = 0.05
    if "max_extra" in spec:
        max_extra = number_of(doc, spec["max_extra"], (*path, "max_extra"))
        if not 0 <= max_extra <= 1:
            raise doc.error((*path, "max_extra"), f"must be in [0, 1], got {max_extra!r}")
    if "after_ms" in spec:
        after_ms = number_of(doc, spec["after_ms"], (*path, "after_ms"))
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


def _mode(doc: Doc, value: object, path: YamlPath) -> Mode:
    modes = {m.value: m for m in Mode}
    if isinstance(value, str) and value in modes:
        return modes[value]
    allowed = ", ".join(modes)
    raise doc.error((*path, "mode"), f"unknown mode {value!r} (allowed: {allowed})")
