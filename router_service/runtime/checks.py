"""What the operator's checking commands need beyond the routing file: the A2A agents' cards."""

from __future__ import annotations

from collections.abc import Iterable

from router_service.adapters.a2a_card import CardCheck, check_agents
from router_service.domain.routing import AgentSpec


async def check_agent_cards(agents: Iterable[AgentSpec]) -> list[CardCheck]:
    """Fetch each A2A agent's card and compare it with the routing file (other agents: none)."""
    return await check_agents(agents)
