"""A router starting on a database that nothing vacuums says so once, in its startup log: the
leases it deletes at every outcome and the old row versions of the log would grow without end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import structlog

from router_service.config.routing_source import RoutingSource
from router_service.observability.metrics import Metrics
from router_service.runtime.startup import running_services
from tests.conftest import make_settings
from tests.support.db import query


def startup_warnings(database_url: str, routing_file: Path) -> list[str]:
    settings = make_settings(database_url, routing_file)

    async def start() -> None:
        async with running_services(settings, RoutingSource.from_file(routing_file), Metrics()):
            pass

    with structlog.testing.capture_logs() as logs:
        asyncio.run(start())
    return [e["warning"] for e in logs if e.get("event") == "startup.maintenance"]


def test_postgres_startup_warns_exactly_when_autovacuum_is_off(
    migrated: Callable[[str], str], routing_file: Path
) -> None:
    url = migrated("postgres")
    [server] = query(url, "SELECT current_setting('autovacuum') AS autovacuum")
    warnings = startup_warnings(url, routing_file)
    if server["autovacuum"] == "on":
        assert warnings == []
    else:
        [warning] = warnings
        assert warning.startswith("autovacuum off on this Postgres server")


def test_sqlite_startup_has_nothing_to_warn_about(
    migrated: Callable[[str], str], routing_file: Path
) -> None:
    assert startup_warnings(migrated("sqlite"), routing_file) == []
