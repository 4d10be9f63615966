"""What the intake, the replayer and the sweeper share."""

from __future__ import annotations

from dataclasses import dataclass

from router_service.config.routing_file import RoutingConfig
from router_service.service.dispatch import Dispatcher
from router_service.service.ports import Events, Store


@dataclass(frozen=True, slots=True)
class Collaborators:
    """One store, one dispatcher, one routing file, one events sink, the request deadline, and
    this process's name as the owner of the leases and claims it takes."""

    store: Store
    dispatcher: Dispatcher
    routing: RoutingConfig
    events: Events
    deadline_s: float
    owner: str
