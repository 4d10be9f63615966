"""Explain a routing decision without making it: the trace, the plan, and each agent's circuit.

Nothing is claimed, dispatched or written: the answer is computed from the active routing version
and the breakers' state in this process.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from router_service.domain.explain import Decision, explain
from router_service.domain.routing import Mode
from router_service.service.ports import RoutingVersion


def explain_payload(
    version: RoutingVersion,
    payload: Mapping[str, Any],
    mode: Mode | None = None,
    *,
    default_timeout_s: float | None = None,
    circuits: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The decision trace as JSON. ``circuits`` (agent -> state) adds ``circuit`` and
    ``circuit_open`` to each planned agent; without it (the CLI) they are left out."""
    config = version.config
    decision: Decision = explain(
        config.classifier, config.table, payload, mode, default_timeout_s=default_timeout_s
    )
    body = decision.as_dict()
    for agent in body["plan"]["agents"]:
        agent["url"] = config.agents[agent["name"]].shown_url
        if circuits is not None:
            state = circuits.get(agent["name"], "closed")
            agent["circuit"] = state
            agent["circuit_open"] = state == "open"
    return {
        "routing_version": version.version,
        "routing_file": version.file,
        "dispatched": False,
        **body,
    }
