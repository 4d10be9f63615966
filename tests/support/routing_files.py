"""Routing files for tests, written from data rather than by hand.

``routing_text`` writes any file, one flow-style line per agent, rule and route (the spelling a
person would use, so a test can still edit a line of it); ``routing_yaml`` is the file most
tests route with, over the demo agents; ``shipped_routing_on`` is the file the package ships.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from router_service.devtools.demo_agents import RunningAgents
from tests.support.processes import ROOT

Entry = Mapping[str, object]

# The demo file's routes: the payload's ``route`` field picks the kind of the same name.
DEMO_ROUTES: dict[str, tuple[list[str], str]] = {
    "one": (["alpha"], "first_success"),
    "race": (["alpha", "beta"], "first_success"),
    "chain": (["alpha", "beta", "gamma"], "fallback"),
    "fanout": (["alpha", "beta", "gamma"], "aggregate"),
    "deadend": (["dead"], "first_success"),
}


def _flow(value: object) -> str:
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()


def agent(name: str, url: str, **options: object) -> Entry:
    """An agent of the file: ``options`` are its other fields (``protocol="a2a"``, ...)."""
    return {"name": name, "url": url, **options}


def by_route(value: str, *, kind: str | None = None, rule_id: str | None = None) -> Entry:
    """The rule that classifies a payload whose ``route`` field is ``value`` (as that kind,
    unless ``kind`` says otherwise)."""
    return {
        "id": rule_id or f"route-{value}",
        "kind": kind or value,
        "when": {"field": "route", "equals": value},
    }


def routing_text(
    agents: Sequence[Entry], routes: Mapping[str, Entry], rules: Sequence[Entry] = ()
) -> str:
    """A routing file: ``agents`` and ``rules`` in order, ``routes`` by kind."""
    lines = ["agents:", *(f"  - {_flow(agent)}" for agent in agents)]
    if rules:
        lines += ["rules:", *(f"  - {_flow(rule)}" for rule in rules)]
    lines += ["routes:", *(f"  {kind}: {_flow(route)}" for kind, route in routes.items())]
    return "\n".join(lines) + "\n"


def routing_yaml(
    agents: RunningAgents,
    closed_port: int = 9,
    *,
    kind_of: Mapping[str, str] | None = None,
    agents_of: Mapping[str, Sequence[str]] | None = None,
) -> str:
    """The demo agents' file: the payload's ``route`` field picks the kind (``DEMO_ROUTES``);
    the agent ``dead`` is a closed port. A candidate differs by ``kind_of`` (route value -> the
    kind its rule now classifies as) or ``agents_of`` (kind -> the agents it now goes to)."""
    names = ["alpha", "beta", "gamma"]
    listed = [agent(name, agents.url(name)) for name in names]
    listed.append(agent("dead", f"http://127.0.0.1:{closed_port}/agents/dead"))
    rules = [by_route(value, kind=(kind_of or {}).get(value)) for value in DEMO_ROUTES]
    moved = agents_of or {}
    routes: dict[str, Entry] = {
        kind: {"agents": list(moved.get(kind, targets)), "mode": mode}
        for kind, (targets, mode) in DEMO_ROUTES.items()
    }
    routes["default"] = {"agents": ["alpha"], "mode": "first_success"}
    return routing_text(listed, routes, rules)


def shipped_routing_on(port: int, directory: Path) -> Path:
    """The shipped routing file, with its demo agents moved to ``port``, written in
    ``directory``."""
    text = (ROOT / "router_service/config/routing.yaml").read_text()
    assert "127.0.0.1:9100" in text
    path = directory / "routing.yaml"
    path.write_text(text.replace("127.0.0.1:9100", f"127.0.0.1:{port}"))
    return path
