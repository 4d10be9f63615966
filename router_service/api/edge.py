"""What the HTTP edge keeps beside the running router (``runtime.Services``): the API keys, the
body limits, the failed-authentication limiter, the trusted proxies and the count of signals in
flight. Built by the app factory; found on ``app.state.edge``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from router_service.api.auth import FailureLimiter, KeyRing
from router_service.api.body import BodyLimits
from router_service.config.settings import IpNetwork, Settings
from router_service.runtime.services import Services


@dataclass
class Edge:
    keys: KeyRing
    limits: BodyLimits
    auth_failures: FailureLimiter
    trusted_proxies: tuple[IpNetwork, ...]
    max_in_flight: int
    in_flight: int = 0  # signals being routed; bounded by MAX_IN_FLIGHT

    @classmethod
    def from_settings(cls, settings: Settings, keys: KeyRing) -> Edge:
        return cls(
            keys=keys,
            limits=BodyLimits(
                max_bytes=settings.max_body_bytes,
                max_depth=settings.max_json_depth,
                max_string_chars=settings.max_string_chars or 0,
                max_array_items=settings.max_array_items or 0,
                timeout_s=settings.body_timeout_s,
            ),
            auth_failures=FailureLimiter(settings.auth_failures_per_minute),
            trusted_proxies=settings.trusted_proxy_networks,
            max_in_flight=settings.max_in_flight,
        )


def edge(request: Request) -> Edge:
    found: Edge = request.app.state.edge
    return found


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found
