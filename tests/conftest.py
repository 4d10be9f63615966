"""Shared fixtures: a throwaway Postgres database per run, SQLite files, demo agents, routers.

Postgres is never skipped: when it is unreachable, the tests that need it fail. The helpers
behind these fixtures are in ``tests/support/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from router_service.adapters.db.migrate import upgrade
from router_service.config.settings import Settings
from router_service.devtools.demo_agents import RunningAgents, run_in_thread
from tests.support.db import PG_ADMIN as PG_ADMIN  # for tests/acceptance/test_soak_quick
from tests.support.db import scratch_database, service_url, sqlite_url
from tests.support.proxy import FaultyProxy
from tests.support.routing_files import routing_yaml

API_KEY = "test-key"


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
                url = sqlite_url(tmp_path_factory.mktemp("sqlite") / "router.db")
            upgrade(service_url(url))
            made[backend] = url
        return made[backend]

    return get


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Each module that asks runs on both backends, one after the other."""
    return str(request.param)


@pytest.fixture(scope="module")
def database_url(backend: str, migrated: Callable[[str], str]) -> str:
    """The run's migrated database of ``backend``, shared by the modules on it."""
    return migrated(backend)


@pytest.fixture
def proxy(migrated: Callable[[str], str]) -> Iterator[FaultyProxy]:
    """A proxy in front of the migrated Postgres database, to cut and restore (an outage)."""
    url = make_url(migrated("postgres"))
    running = FaultyProxy(url.host or "127.0.0.1", url.port or 5432).start()
    try:
        yield running
    finally:
        running.stop()
