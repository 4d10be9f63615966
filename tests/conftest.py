"""Shared fixtures: a throwaway Postgres database per run, SQLite files, demo agents, routers.

Postgres is never skipped: when it is unreachable, the tests that need it fail.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from router_service.adapters.db.migrate import upgrade
from router_service.config.settings import Settings
from router_service.devtools.demo_agents import RunningAgents, run_in_thread

PG_ADMIN = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
API_KEY = "test-key"


async def _admin(statement: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN, timeout=10)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def scratch_database(backend: str, directory: Path | None = None) -> Iterator[str]:
    """The URL of a new, empty database of ``backend`` ("postgres" or "sqlite", a file in
    ``directory``), dropped afterwards."""
    name = f"router_test_{secrets.token_hex(4)}"
    if backend == "sqlite":
        assert directory is not None
        yield f"sqlite:///{directory / name}.db"
        return
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database created for this run and dropped after it."""
    with scratch_database("postgres") as url:
        yield url


@pytest.fixture(scope="session")
def agents() -> Iterator[RunningAgents]:
    running = run_in_thread()
    try:
        yield running
    finally:
        running.stop()


def routing_yaml(agents: RunningAgents, closed_port: int = 9) -> str:
    """A routing file for tests: the payload's ``route`` field picks the kind."""
    names = ["alpha", "beta", "gamma"]
    lines = ["agents:"]
    lines += [f"  - {{name: {n}, url: '{agents.url(n)}'}}" for n in names]
    lines.append(f"  - {{name: dead, url: 'http://127.0.0.1:{closed_port}/agents/dead'}}")
    lines.append("rules:")
    routes = {
        "one": ("[alpha]", "first_success"),
        "race": ("[alpha, beta]", "first_success"),
        "chain": ("[alpha, beta, gamma]", "fallback"),
        "fanout": ("[alpha, beta, gamma]", "aggregate"),
        "deadend": ("[dead]", "first_success"),
    }
    for kind in routes:
        lines.append(
            f"  - {{id: route-{kind}, kind: {kind}, when: {{field: route, equals: {kind}}}}}"
        )
    lines.append("routes:")
    for kind, (targets, mode) in routes.items():
        lines.append(f"  {kind}: {{agents: {targets}, mode: {mode}}}")
    lines.append("  default: {agents: [alpha], mode: first_success}")
    return "\n".join(lines) + "\n"


def make_settings(database_url: str, routing_file: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "api_key": API_KEY,
        "routing_config": routing_file,
        "agent_timeout_ms": 500,
        "request_deadline_ms": 2500,
        "retry_base_ms": 1,
        "retry_cap_ms": 5,
        "startup_db_wait_s": 0,
        # Tests share agents across a module: the breaker and budget get their own tests.
        "breaker_failures": 1_000_000,
        "retry_budget_min": 1_000_000,
        "log_level": "WARNING",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="session")
def routing_file(tmp_path_factory: pytest.TempPathFactory, agents: RunningAgents) -> Path:
    path = tmp_path_factory.mktemp("routing") / "routing.yaml"
    path.write_text(routing_yaml(agents))
    return path


@pytest.fixture(scope="session")
def migrated(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], str]:
    """backend name -> URL of a migrated database of that backend (made once per run)."""
    made: dict[str, str] = {}

    def get(backend: str) -> str:
        if backend not in made:
            if backend == "postgres":
                url = postgres_url
            else:
                url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'router.db'}"
            upgrade(Settings(_env_file=None, database_url=url).database_url)  # type: ignore[call-arg]
            made[backend] = url
        return made[backend]

    return get
