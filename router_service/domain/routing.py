"""The routing table: a kind becomes a plan (which agents, in which mode)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit, urlunsplit

DEFAULT_KIND = "default"


class Mode(StrEnum):
    FIRST_SUCCESS = "first_success"
    FALLBACK = "fallback"
    AGGREGATE = "aggregate"
    HEDGE = "hedge"


class AgentProtocol(StrEnum):
    """How the router speaks to an agent; the dispatcher picks the client by it."""

    HTTP = "http"  # our JSON envelope, any 2xx is delivered
    A2A = "a2a"  # Agent2Agent over JSON-RPC 2.0


A2A_VERSIONS = ("1.0", "0.3")


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One downstream agent. ``timeout_s`` overrides the per-attempt default when set;
    ``a2a_version`` is set only for A2A agents."""

    name: str
    url: str
    timeout_s: float | None = None
    protocol: AgentProtocol = AgentProtocol.HTTP
    a2a_version: str | None = None

    @property
    def shown_url(self) -> str:
        """The url as pages, answers and log lines show it (``redacted_url``)."""
        return redacted_url(self.url)


def redacted_url(url: str) -> str:
    """``url`` with its password and its query's values as ``***``: an agent's url may carry
    its credentials (``https://user:secret@host/hook?token=...``), which only the call needs."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    fields = (field.partition("=") for field in parts.query.split("&")) if parts.query else ()
    query = "&".join(f"{name}=***" if equals else name for name, equals, _ in fields)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True, slots=True)
class HedgePolicy:
    """When a hedge route starts its next agent: after ``after_s`` when set, else after the
    agent's observed ``percentile`` latency; extra calls at most ``max_extra`` of calls."""

    after_s: float | None = None
    percentile: float = 0.95
    max_extra: float = 0.05


@dataclass(frozen=True, slots=True)
class Route:
    kind: str
    agents: tuple[str, ...]
    mode: Mode
    hedge: HedgePolicy | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """What dispatch will do for one signal."""

    kind: str
    rule: str
    mode: Mode
    agents: tuple[AgentSpec, ...]
    hedge: HedgePolicy | None = None
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
        chosen = mode or route.mode
        hedge = None
        if chosen is Mode.HEDGE:  # a caller may ask for hedge on a route that sets no policy
            hedge = route.hedge or HedgePolicy()
        return Plan(
            kind=kind,
            rule=rule,
            mode=chosen,
            agents=tuple(self.agents[name] for name in route.agents),
            hedge=hedge,
            version=version,
        )
