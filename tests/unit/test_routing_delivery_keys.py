"""Routing-file keys for delivery: an agent's protocol and A2A version, a route's hedge."""

from __future__ import annotations

import pytest

from router_service.config.routing_file import parse_routing_config
from router_service.domain.errors import ConfigError
from router_service.domain.routing import AgentProtocol, HedgePolicy, Mode


def one_agent(agent: str) -> str:
    routes = "routes:\n  default: {agents: [a]}\n"
    return f"agents:\n  - {{name: a, url: 'http://h/a', {agent}}}\n" + routes


def parse_agents(agent: str) -> dict[str, object]:
    text = one_agent(agent)
    spec = parse_routing_config(text, "routing.yaml").agents["a"]
    return {"protocol": spec.protocol, "version": spec.a2a_version}


def parse_route(route: str) -> tuple[Mode, HedgePolicy | None]:
    text = (
        "agents:\n  - {name: a, url: 'http://h/a'}\n  - {name: b, url: 'http://h/b'}\n"
        f"routes:\n  default: {{agents: [a, b], {route}}}\n"
    )
    found = parse_routing_config(text, "routing.yaml").table.routes["default"]
    return found.mode, found.hedge


def failure(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_routing_config(text, "routing.yaml")
    return info.value.message


def test_protocol_defaults_to_http_and_a2a_defaults_to_version_1_0() -> None:
    text = "agents:\n  - {name: a, url: 'http://h/a'}\nroutes:\n  default: {agents: [a]}\n"
    spec = parse_routing_config(text, "routing.yaml").agents["a"]
    assert (spec.protocol, spec.a2a_version) == (AgentProtocol.HTTP, None)
    assert parse_agents("protocol: a2a") == {"protocol": AgentProtocol.A2A, "version": "1.0"}
    assert parse_agents('protocol: a2a, a2a_version: "0.3"') == {
        "protocol": AgentProtocol.A2A,
        "version": "0.3",
    }


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        ("protocol: grpc", "agents[0].protocol: unknown protocol 'grpc' (allowed: http, a2a)"),
        ('a2a_version: "1.0"', "agents[0].a2a_version: a2a_version needs protocol: a2a"),
        (
            "protocol: a2a, a2a_version: 1.0",  # a YAML number, not the string "1.0"
            'agents[0].a2a_version: unknown A2A version 1.0 (allowed: "1.0", "0.3")',
        ),
    ],
)
def test_bad_protocol_keys_name_the_path(agent: str, message: str) -> None:
    text = one_agent(agent)
    assert failure(text) == f"routing.yaml: {message} (line 2)"


def test_hedge_mode_and_hedge_key() -> None:
    assert parse_route("mode: hedge") == (Mode.HEDGE, HedgePolicy())
    assert parse_route("hedge: {after_ms: 40}") == (Mode.HEDGE, HedgePolicy(after_s=0.04))
    assert parse_route("hedge: {after: p99, max_extra: 0.1}") == (
        Mode.HEDGE,
        HedgePolicy(percentile=0.99, max_extra=0.1),
    )
    assert parse_route("mode: fallback") == (Mode.FALLBACK, None)


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("mode: fallback, hedge: {after_ms: 5}", "hedge needs mode: hedge (or no mode)"),
        ("hedge: {after_ms: 5, after: p95}", "give after_ms (a fixed delay) or after"),
        ("hedge: {after: fast}", "expected a percentile like p95, got 'fast'"),
        ("hedge: {after_ms: 0}", "after_ms: must be positive"),
        ("hedge: {max_extra: 2}", "max_extra: must be in [0, 1]"),
        ("hedge: {after_s: 1}", "unknown key 'after_s'"),
    ],
)
def test_bad_hedge_keys_are_refused(route: str, message: str) -> None:
    text = (
        "agents:\n  - {name: a, url: 'http://h/a'}\n"
        f"routes:\n  default: {{agents: [a], {route}}}\n"
    )
    assert message in failure(text)


def test_a_caller_may_ask_for_hedge_on_a_route_without_a_policy() -> None:
    text = "agents:\n  - {name: a, url: 'http://h/a'}\nroutes:\n  default: {agents: [a]}\n"
    table = parse_routing_config(text, "routing.yaml").table
    assert table.plan("default", "default").hedge is None
    assert table.plan("default", "default", Mode.HEDGE).hedge == HedgePolicy()
