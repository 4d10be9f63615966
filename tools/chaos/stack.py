"""One scenario's world: a fresh database on the throwaway cluster, demo agents, router replicas.

``Stack`` starts what a scenario asks for, remembers it all, and at the end gathers the evidence
(agent receipts, the ``signals`` and ``dead_letters`` tables) for ``chaos.invariants``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from chaos.client import Agents, Recorder
from chaos.cluster import ThrowawayCluster
from chaos.invariants import RETRY_MAX_ATTEMPTS, DeadLetter, Evidence, LogRow
from chaos.procs import API_KEY, ROUTER, Proc, Processes, free_port, run_command, wait_http

REQUEST_DEADLINE_MS = 2500
AGENT_TIMEOUT_MS = 1500
LEASE_S = 2 * REQUEST_DEADLINE_MS / 1000
SWEEP_INTERVAL_S = 1

Pick = Callable[[int], tuple[str, str]]

GOOD = ("good-a", "good-b", "good-c")
FAILING = ("fail5xx", "throttle", "reject4xx", "hang", "drip", "reset", "refused")
AGENTS = (*GOOD, *FAILING, "flaky")

# kind -> (agents, mode); the payload's "route" field picks the kind.
ROUTES: Mapping[str, tuple[tuple[str, ...], str]] = {
    "fast": (("good-a",), "first_success"),
    "fanout": (GOOD, "aggregate"),
    **{name: ((name,), "first_success") for name in FAILING},
    "mixed": (("good-b", *FAILING), "aggregate"),
    "replay": (("flaky",), "first_success"),
}


def routing_yaml(agents_url: str, refused_port: int) -> str:
    lines = ["agents:"]
    for name in AGENTS:
        url = f"http://127.0.0.1:{refused_port}/agents/refused" if name == "refused" else None
        lines.append(f"  - {{name: {name}, url: '{url or f'{agents_url}/agents/{name}'}'}}")
    lines.append("rules:")
    for kind in ROUTES:
        lines.append(
            f"  - {{id: route-{kind}, kind: {kind}, when: {{field: route, equals: {kind}}}}}"
        )
    lines.append("routes:")
    for kind, (targets, mode) in ROUTES.items():
        lines.append(f"  {kind}: {{agents: [{', '.join(targets)}], mode: {mode}}}")
    lines.append("  default: {agents: [good-a], mode: first_success}")
    return "\n".join(lines) + "\n"


def overrides() -> dict[str, str]:
    """``CHAOS_ROUTER_ENV="SWEEP_INTERVAL_S=600 ..."``: settings forced on every router, to
    check that the suite notices when a protection is switched off."""
    pairs = (item.partition("=") for item in os.environ.get("CHAOS_ROUTER_ENV", "").split())
    return {name: value for name, sep, value in pairs if sep}


def base_env(database_url: str, routing: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "API_KEY": API_KEY,
        "ROUTING_CONFIG": str(routing),
        "REQUEST_DEADLINE_MS": str(REQUEST_DEADLINE_MS),
        "AGENT_TIMEOUT_MS": str(AGENT_TIMEOUT_MS),
        "RETRY_MAX_ATTEMPTS": str(RETRY_MAX_ATTEMPTS),
        "RETRY_BASE_MS": "20",
        "RETRY_CAP_MS": "200",
        "SWEEP_INTERVAL_S": str(SWEEP_INTERVAL_S),
        "DRAIN_TIMEOUT_S": "10",
        "DLQ_WORKER_ENABLED": "false",
        "DB_CONNECT_TIMEOUT_S": "1",
        "STARTUP_DB_WAIT_S": "10",
        "HEADER_TIMEOUT_S": "2",
        "BODY_TIMEOUT_S": "5",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
        **overrides(),
    }


def _attempts(results: str | None) -> dict[str, int]:
    """Attempts per agent from a row's ``results`` (JSONB text): what the router says it did."""
    decoded = orjson.loads(results) if results else None
    if not isinstance(decoded, list):
        return {}
    return {
        str(r["agent"]): int(r.get("attempts") or 1)
        for r in decoded
        if isinstance(r, dict) and r.get("agent")
    }


@dataclass
class Replica:
    name: str
    port: int
    proc: Proc
    workers: int
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Stack:
    """Everything one scenario started; ``close()`` stops it all (the cluster outlives it)."""

    name: str
    cluster: ThrowawayCluster
    workdir: Path
    session: aiohttp.ClientSession
    processes: Processes = field(init=False)
    database: str = ""
    env: dict[str, str] = field(default_factory=dict)
    agents: Agents = field(init=False)
    replicas: dict[str, Replica] = field(default_factory=dict)
    recorder: Recorder = field(init=False)

    def __post_init__(self) -> None:
        self.processes = Processes(self.workdir / "logs" / self.name).__enter__()
        self.recorder = Recorder(self.session)

    async def start(self, env: Mapping[str, str] | None = None) -> Stack:
        """A new database (migrated), the demo agents and a routing file pointing at them."""
        self.database = await self.cluster.new_database(self.name)
        agents_port = free_port()
        agents = self.processes.spawn(
            "agents", [ROUTER, "demo-agents", "--port", str(agents_port)], {}
        )
        self.agents = Agents(self.session, f"http://127.0.0.1:{agents_port}")
        routing = self.workdir / f"routing-{self.name}.yaml"
        routing.write_text(routing_yaml(self.agents.base_url, free_port()))
        self.env = {**base_env(self.cluster.url(self.database), routing), **(env or {})}
        code, out = await run_command([ROUTER, "migrate"], self.env)
        if code != 0:
            raise RuntimeError(f"router-service migrate failed ({code}): {out.strip()[-300:]}")
        await wait_http(f"{self.agents.base_url}/health", agents)
        return self

    async def start_replica(
        self, name: str, *, workers: int = 1, env: Mapping[str, str] | None = None
    ) -> Replica:
        port = free_port()
        replica_env = {**self.env, **(env or {})}
        if workers > 1:  # the metrics files of its worker processes, deleted with the workdir
            metrics = self.workdir / "metrics" / f"{self.name}-{name}"
            replica_env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics)
        args = [ROUTER, "serve", "--host", "127.0.0.1", "--port", str(port)]
        if workers > 1:
            args += ["--workers", str(workers)]
        proc = self.processes.spawn(name, args, replica_env)
        replica = Replica(name, port, proc, workers, replica_env)
        self.replicas[name] = replica
        await wait_http(f"{replica.base_url}/health/live", proc)
        return replica

    async def restart_replica(self, replica: Replica) -> float:
        """Start ``replica`` again on its port; returns the seconds until it was live."""
        started = time.monotonic()
        args = [ROUTER, "serve", "--host", "127.0.0.1", "--port", str(replica.port)]
        if replica.workers > 1:
            args += ["--workers", str(replica.workers)]
        replica.proc = self.processes.spawn(replica.name, args, replica.env)
        await wait_http(f"{replica.base_url}/health/live", replica.proc)
        return time.monotonic() - started

    def pick(self, *names: str) -> Pick:
        """A round-robin ``pick(i) -> (name, base URL)`` over the named replicas."""
        chosen = [self.replicas[n] for n in names]

        def pick(index: int) -> tuple[str, str]:
            replica = chosen[index % len(chosen)]
            return replica.name, replica.base_url

        return pick

    async def log_rows(self) -> list[LogRow]:
        query = "SELECT log_id, status, results FROM signals"
        rows = await self.cluster.fetch(query, database=self.database)
        return [LogRow(r["log_id"], r["status"], _attempts(r["results"])) for r in rows]

    async def dead_letters(self) -> list[DeadLetter]:
        rows = await self.cluster.fetch(
            "SELECT id, log_id, agent, status FROM dead_letters ORDER BY id",
            database=self.database,
        )
        return [DeadLetter(r["id"], r["log_id"], r["agent"], r["status"]) for r in rows]

    async def in_progress(self) -> int:
        rows = await self.cluster.fetch(
            "SELECT count(*) AS n FROM signals WHERE status = 'in_progress'", database=self.database
        )
        return int(rows[0]["n"])

    async def evidence(self, crash_affected: frozenset[str] = frozenset()) -> Evidence:
        return Evidence(
            answers=list(self.recorder.answers),
            receipts=await self.agents.receipts(AGENTS),
            log_rows=await self.log_rows(),
            dead_letters=await self.dead_letters(),
            crash_affected=crash_affected,
            failed_replays=await self.failed_replays(),
        )

    async def failed_replays(self) -> dict[tuple[str, str], int]:
        """Replays the router recorded as failed: the agent may have taken any of their
        attempts (held past the router's timeout) before the entry was replayed again."""
        rows = await self.cluster.fetch(
            "SELECT log_id, agent, count(*) AS n FROM replay_attempts "
            "WHERE outcome IN ('pending', 'exhausted') GROUP BY log_id, agent",
            database=self.database,
        )
        return {(r["log_id"], r["agent"]): int(r["n"]) for r in rows}

    async def close(self) -> None:
        self.processes.close()
        if self.database and self.cluster.running:
            await self.cluster.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
