"""Postgres: reads that may walk much of the log (pages of it or of the dead letters, a replay's
survey) hold at most half the pool's connections; past the connect timeout in line they are a
503, and everything else keeps the rest. Twenty-five filtered pages at once took every
connection: ``/health`` waited 1.9 s and a replay job running in the background failed."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from router_service.config.settings import Settings
from router_service.domain.errors import Overloaded
from router_service.observability.events import Telemetry
from router_service.observability.metrics import Metrics
from router_service.runtime.services import build_store
from router_service.service.records import DeadLetterFilter, DeadLetterQuery, LogQuery
from tests.support.db import migrated_database

pytestmark = pytest.mark.postgres


def test_reads_of_the_log_take_half_the_pool_and_leave_the_rest(tmp_path: Path) -> None:
    async def scenario(url: str) -> None:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            database_url=url,
            db_pool_size=4,
            db_max_overflow=0,
            db_connect_timeout_s=0.2,
        )
        store: Any = build_store(settings, Telemetry(Metrics()))
        try:
            async with AsyncExitStack() as held:
                for _ in range(2):  # half of 4
                    await held.enter_async_context(store._pool.scan())
                for read in (
                    store.list_logs(LogQuery(limit=5)),
                    store.list_dead_letters(DeadLetterQuery(limit=5)),
                    store.survey_dead_letters(DeadLetterFilter()),
                ):
                    with pytest.raises(Overloaded, match="too many reads of the log"):
                        await read
                assert await store.ping() >= 0  # everything else has its connections
            assert (await store.list_logs(LogQuery(limit=5))).items == []
        finally:
            await store.close()

    with migrated_database("postgres", tmp_path) as url:
        asyncio.run(scenario(url))
