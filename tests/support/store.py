"""The store on its own, without a server: the store of a URL, and what to feed it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from router_service.adapters.db.engine import migration_engine
from router_service.config.settings import Settings
from router_service.domain.outcome import AgentResult, DeadLetter, Outcome, Status
from router_service.domain.routing import AgentSpec, Mode, Plan
from router_service.domain.signal import Signal
from router_service.observability.events import Telemetry
from router_service.observability.metrics import Metrics
from router_service.runtime.services import build_store
from router_service.service.ports import Store
from tests.support.db import query, service_url

PLAN = Plan(
    kind="one",
    rule="route-one",
    mode=Mode.FIRST_SUCCESS,
    agents=(AgentSpec("alpha", "http://127.0.0.1:9/agents/alpha"),),
)
DELIVERED = Outcome(
    Status.DELIVERED,
    {"ok": True},
    (AgentResult("alpha", True, 200, 1, 1.0, response={"ok": True}),),
    (),
)
PARKED = Outcome(
    Status.DEAD_LETTERED,
    None,
    (AgentResult("alpha", False, 400, 1, 1.0, error="HTTP 400"),),
    (DeadLetter(None, "alpha: HTTP 400", 1),),
)


@asynccontextmanager
async def open_engine(url: str) -> AsyncIterator[AsyncEngine]:
    """A SQLAlchemy engine on ``url`` (the migrations' kind), disposed on the way out."""
    engine = migration_engine(service_url(url), connect_timeout_s=5, busy_timeout_ms=5000)
    try:
        yield engine
    finally:
        await engine.dispose()


@asynccontextmanager
async def open_store(url: str, metrics: Metrics | None = None) -> AsyncIterator[Store]:
    """The store as the server builds it: on Postgres, asyncpg on one pool with group commit;
    on SQLite, SQLAlchemy."""
    settings = Settings(_env_file=None, database_url=url)  # type: ignore[call-arg]
    store = build_store(settings, Telemetry(metrics or Metrics()))
    try:
        yield store
    finally:
        await store.close()


def signal(log_id: str, sender_id: str = "store-test", text: str | None = None) -> Signal:
    """A signal routed to ``one``; ``text``, when given, makes its payload that much larger."""
    extra = {} if text is None else {"text": text}
    return Signal.create(
        sender_id=sender_id,
        payload={"route": "one", "id": log_id, **extra},
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        log_id=log_id,
    )


def backdate(url: str, log_id: str, day: datetime) -> None:
    """Move a signal (and its key) back in time, as if it had been claimed on ``day``."""
    spelled = day.strftime("%Y-%m-%d %H:%M:%S.%f") if url.startswith("sqlite") else day
    for table in ("signals", "idempotency_keys"):
        query(url, f"UPDATE {table} SET created_at = $1 WHERE log_id = $2", spelled, log_id)  # noqa: S608 - constant


def keys(url: str) -> set[str]:
    return {r["log_id"] for r in query(url, "SELECT log_id FROM idempotency_keys")}


async def record_outcome(
    store: Store, log_id: str, plan: Plan, outcome: Outcome, latency_ms: float
) -> int:
    """``store.record`` for a signal claimed earlier, found by its ``log_id``."""
    row = await store.get(log_id)
    assert row is not None, log_id
    return await store.record(log_id, row.created_at, plan, outcome, latency_ms)


async def grow_log(url: str, rows: int) -> None:
    """Rows written behind the router's back, without ANALYZE: the statistics still say empty."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO idempotency_keys (log_id, created_at) "
            "SELECT 'grown-' || n, now() FROM generate_series(1, $1) AS n",
            rows,
        )
        await conn.execute(
            "INSERT INTO signals (log_id, sender_id, payload_hash, payload, metadata, signal_ts, "
            "trace_id, kind, rule, mode, routed_agents, status, results, response, latency_ms, "
            "created_at, updated_at) "
            "SELECT log_id, 's', repeat('0', 64), '{\"n\":1}', '{}', now(), repeat('a', 32), "
            "'one', 'r', 'fallback', '[\"alpha\"]', 'delivered', '[]', 'null', 1.0, created_at, "
            "created_at FROM idempotency_keys WHERE log_id LIKE 'grown-%'"
        )
    finally:
        await conn.close()
