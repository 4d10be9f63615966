"""What the intake, the replayer and the sweeper share."""

from __future__ import annotations

from dataclasses import dataclass

from router_service.service.dispatch import Dispatcher
from router_service.service.ports import Backlog, Events, Routing, Store


@dataclass(frozen=True, slots=True)
class Collaborators:
    """One store, one dispatcher, the routing source (ask it for the ``current()`` routing for
    each piece of work; never keep what it returns), one events sink, the backlog gauge, the
    request deadline, and this process's name as the owner of the leases and claims it takes."""

    store: Store
    dispatcher: Dispatcher
    routing: Routing
    events: Events
    backlog: Backlog
    deadline_s: float
    owner: str
    # SHADOW_ROUTING_CONFIG: a candidate that classifies every live signal too, never dispatching.
    shadow: Routing | None = None
