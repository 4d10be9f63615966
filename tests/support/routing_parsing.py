"""Routing texts for the routing file's own tests: a file built around the part under test,
parsed, and the error it gets. ``AGENTS`` is six lines long: the line numbers in the expected
messages count on it."""

from __future__ import annotations

import textwrap

import pytest

from router_service.config.routing_file import RoutingConfig, parse_routing_config
from router_service.domain.errors import ConfigError

AGENTS = """\
agents:
  - name: a
    url: http://127.0.0.1:9100/agents/a
  - name: b.agent_2
    url: https://agents.example.com:8443/b
    timeout_ms: 1500
"""
ROUTES = """\
routes:
  default: {agents: [a]}
"""


def build(rules: str = "", *, agents: str = AGENTS, routes: str = ROUTES) -> str:
    body = textwrap.dedent(rules).strip("\n") + "\n"
    rules_block = "rules:\n" + textwrap.indent(body, "  ") if rules else ""
    return agents + rules_block + routes


def parse(text: str) -> RoutingConfig:
    return parse_routing_config(text, "routing.yaml")


def error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return info.value.message


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line of the ``nth`` line containing ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    return hits[nth - 1]


def rule_error(when: str) -> tuple[str, str]:
    """The error for a single rule with condition ``when``, and the config text."""
    text = build(f"- id: r\n  kind: k\n  when: {when}\n")
    return error(text), text
