"""What the console keeps while the router runs: its session signer, templates and the Health
page's sampler. Built in the app's lifespan, closed with it. Replays are the router's replay
jobs (``Services.replay_jobs``), kept in the database, not here."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.templating import Jinja2Templates

from router_service.api.auth import KeyRing
from router_service.api.edge import Edge
from router_service.console.sampling import Sampler
from router_service.console.session import SessionSigner
from router_service.runtime.services import Services


@dataclass
class ConsoleState:
    signer: SessionSigner
    keys: KeyRing
    templates: Jinja2Templates
    sampler: Sampler


def templates() -> Jinja2Templates:
    # Autoescape on every template: payloads are shown as text, whatever they contain.
    env = Environment(
        loader=PackageLoader("router_service.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return Jinja2Templates(env=env)


@contextlib.asynccontextmanager
async def running_console(services: Services, edge: Edge) -> AsyncIterator[ConsoleState]:
    settings = services.settings
    secret = settings.console_secret
    signer = SessionSigner(
        secret.get_secret_value().encode() if secret else secrets.token_bytes(32),
        settings.console_session_hours * 3600,
    )
    sampler = Sampler(
        services.metrics.router_latency,
        lambda: edge.in_flight,
        settings.console_sample_interval_s,
    )
    state = ConsoleState(signer, edge.keys, templates(), sampler)
    sampling = asyncio.create_task(sampler.run())
    try:
        yield state
    finally:
        sampling.cancel()
        await asyncio.gather(sampling, return_exceptions=True)
