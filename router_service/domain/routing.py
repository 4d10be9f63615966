"""The routing table: a kind becomes a plan (which agents, in which mode)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_KIND = "default"


class Mode(StrEnum):
    FIRST_SUCCESS = "first_success"
    FALLBACK = "fallback"
    AGGREGATE = "aggregate"


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One downstream agent. ``timeout_s`` overrides the per-attempt default when set."""

    name: str
    url: str
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class Route:
    kind: str
    agents: tuple[str, ...]
    mode: Mode


@dataclass(frozen=True, slots=True)
class Plan:
    """What dispatch will do for one signal."""

    kind: str
    rule: str
    mode: Mode
    agents: tuple[AgentSpec, ...]
    # The routing file version (content hash) that made this plan; recorded with the signal.
    version: str = ""

    @property
    def agent_names(self) -> list[str]:
        return [a.name for a in self.agents]


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """kind -> route; a kind without a route falls to the ``default`` route."""

    agents: Mapping[str, AgentSpec]
    routes: Mapping[str, Route]

    def route_for(self, kind: str) -> Route:
        return self.routes.get(kind) or self.routes[DEFAULT_KIND]

    def plan(self, kind: str, rule: str, mode: Mode | None = None, version: str = "") -> Plan:
        route = self.route_for(kind)
        return Plan(
            kind=kind,
            rule=rule,
            mode=mode or route.mode,
            agents=tuple(self.agents[name] for name in route.agents),
            version=version,
        )
