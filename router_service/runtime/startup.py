"""Starting and stopping a router: the schema it needs, the checks before a server starts, and
the running services' lifetime (for the app's lifespan, ``worker`` and the CLI's commands)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from collections.abc import AsyncIterator

from router_service.adapters.db.revision import SCHEMA_HEAD
from router_service.config.routing_source import RoutingSource
from router_service.config.settings import Settings
from router_service.domain.errors import SchemaOutOfDate, StorageError
from router_service.observability.events import Telemetry
from router_service.observability.logging import get_logger
from router_service.observability.metrics import Metrics
from router_service.runtime.services import Services, build_services, build_store
from router_service.service.ports import Store


def migrate(settings: Settings) -> str:
    """Create the database if needed and bring its schema to the newest revision (returned).
    Alembic is imported here, when asked: a server never loads it."""
    from router_service.adapters.db.migrate import upgrade

    return upgrade(settings.database_url)


async def wait_for_schema(store: Store, wait_s: float) -> None:
    """Wait for the database (it may start after us), then refuse to run on an old schema."""
    log = get_logger("startup")
    delay = 0.2
    loop = asyncio.get_running_loop()
    give_up = loop.time() + wait_s
    while True:
        try:
            revision = await store.schema_revision()
            break
        except StorageError as exc:
            if loop.time() + delay > give_up:
                raise
            log.warning("startup.waiting_for_database", error=exc.message, retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    head = SCHEMA_HEAD
    if revision != head:
        raise SchemaOutOfDate(
            f"the database schema is at revision {revision or 'none'} but this router needs "
            f"{head}: run `router-service migrate` (or `alembic upgrade head`) first"
        )


async def preflight(settings: Settings) -> None:
    """What the lifespan would refuse, checked before a server starts (one clear line)."""
    store = build_store(settings, Telemetry(Metrics()))
    try:
        await wait_for_schema(store, settings.startup_db_wait_s)
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def running_services(
    settings: Settings,
    routing: RoutingSource,
    metrics: Metrics,
    *,
    redelivery: bool = False,
) -> AsyncIterator[Services]:
    services = build_services(settings, routing, metrics)
    try:
        await wait_for_schema(services.store, settings.startup_db_wait_s)
        for warning in await services.store.maintenance_warnings():
            get_logger("startup").warning("startup.maintenance", warning=warning)
        services.start_background(redelivery=redelivery or settings.dlq_worker_enabled)
        # What is loaded by now (modules, settings, routing, clients) lives as long as the
        # process: kept out of the cyclic collector's full passes, which otherwise walk all of
        # it (about 90,000 objects, 58-73 ms each on the benchmark machine) while every
        # request in flight waits. (Freezing is a list splice; what startup left as garbage
        # stays until the process stops serving.)
        gc.freeze()
        # One line per process once it serves and reloads on SIGHUP: under --workers N, a
        # signal sent before every worker has logged this restarts the late ones instead.
        get_logger("startup").info(
            "startup.ready", pid=os.getpid(), routing_version=routing.current().version
        )
        yield services
    finally:
        gc.unfreeze()  # collectable again once the process stops serving
        await services.close()
