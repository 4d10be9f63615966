"""The composition root: everything one running router owns, built here and nowhere else.

``serve`` (through the app's lifespan), ``worker`` and the CLI's commands get their store, agent
clients, dispatcher, intake, replayer, sweeper and replay jobs from ``build_services``; the HTTP
edge adds only what is HTTP's own (keys, body limits: ``api/edge.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import signal
import socket
import threading
from dataclasses import dataclass, field

from router_service.adapters.a2a import A2aAgentClient
from router_service.adapters.agents import HttpAgentClient
from router_service.adapters.db.backends import StoreSettings, open_store
from router_service.config.routing_source import RoutingSource, read_version
from router_service.config.routing_watch import watch_routing
from router_service.config.settings import Settings
from router_service.domain.errors import StorageError
from router_service.domain.retry import RetryPolicy
from router_service.domain.routing import AgentProtocol
from router_service.observability.events import Telemetry
from router_service.observability.logging import get_logger
from router_service.observability.metrics import Metrics
from router_service.runtime.reload import RoutingReloader
from router_service.runtime.supervisor import peer_notifier
from router_service.service.backlog import BacklogGauge
from router_service.service.context import Collaborators
from router_service.service.dispatch import Dispatcher
from router_service.service.fairness import SenderLimiter, SenderWeights
from router_service.service.intake import Intake
from router_service.service.ports import AgentClient, Events, Store
from router_service.service.recovery import Sweeper, redelivery_step, run_every
from router_service.service.replay import Replayer
from router_service.service.replay_jobs import ReplayJobs


def instance_id() -> str:
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass
class Services:
    settings: Settings
    routing: RoutingSource
    metrics: Metrics
    store: Store
    client: HttpAgentClient
    dispatcher: Dispatcher
    intake: Intake
    replayer: Replayer
    sweeper: Sweeper
    telemetry: Telemetry
    backlog: BacklogGauge
    owner: str
    senders: SenderLimiter
    reloader: RoutingReloader
    replay_jobs: ReplayJobs
    # SHADOW_ROUTING_CONFIG's candidate (the intake classifies by it too); None when off.
    shadow: RoutingSource | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _sighup_loop: asyncio.AbstractEventLoop | None = None

    def render_metrics(self) -> bytes:
        return self.metrics.render()

    def start_background(self, *, redelivery: bool) -> None:
        """Owned tasks, cancelled by ``close``: backlog gauge, lease sweeper, redelivery, and
        the routing file's watcher when ``ROUTING_WATCH`` is on."""
        s = self.settings
        self.tasks.append(asyncio.create_task(self.backlog.run()))
        if s.routing_watch:
            watched = functools.partial(self.reloader.record, trigger="watch")
            self.tasks.append(asyncio.create_task(watch_routing(self.routing, on_reload=watched)))
        self.tasks.append(
            asyncio.create_task(
                run_every(s.sweep_interval_s, "sweep", self.sweeper.sweep_once, self.telemetry)
            )
        )
        if redelivery:
            step = redelivery_step(self.replayer, batch=100, rate_per_s=s.dlq_worker_rate)
            self.tasks.append(
                asyncio.create_task(
                    run_every(s.dlq_worker_interval_s, "redelivery", step, self.telemetry)
                )
            )
        self.tasks.append(
            asyncio.create_task(
                run_every(
                    s.replay_job_poll_s,
                    "replay_takeover",
                    self.replay_jobs.take_over_once,
                    self.telemetry,
                )
            )
        )
        self._reload_on_sighup()

    def _reload_on_sighup(self) -> None:
        """SIGHUP re-reads the routing file. Only the main thread may own a signal handler (a
        server run in a thread, as in tests, reloads through the admin endpoint)."""
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()

        async def reload() -> None:
            try:
                await self.reloader.reload(trigger="sighup")
            except Exception as exc:  # nobody awaits this task: say it here
                get_logger("routing").exception(
                    "routing.reload_failed", error=f"{type(exc).__name__}: {exc}", trigger="sighup"
                )

        def on_sighup() -> None:
            self.tasks.append(loop.create_task(reload()))

        loop.add_signal_handler(signal.SIGHUP, on_sighup)
        self._sighup_loop = loop

    async def close(self) -> None:
        if self._sighup_loop is not None:
            self._sighup_loop.remove_signal_handler(signal.SIGHUP)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.replay_jobs.close()
        with contextlib.suppress(StorageError):
            # Jobs this process was running are taken over by another replica right away.
            await self.store.release_replay_jobs(self.owner)
        with contextlib.suppress(StorageError):
            # Whatever is still in flight becomes reclaimable by the other replicas right away.
            released = await self.store.release_leases(self.owner)
            if released:
                get_logger("shutdown").warning("shutdown.leases_released", signals=released)
        await self.client.close()
        await self.store.close()
        await asyncio.to_thread(self.telemetry.close)  # flushes queued spans over HTTP


def store_settings(settings: Settings) -> StoreSettings:
    """On Postgres one pool of ``DB_POOL_SIZE + DB_MAX_OVERFLOW`` connections is the process's
    whole budget; SQLite keeps SQLAlchemy's pool of the two settings."""
    return StoreSettings(
        database_url=settings.database_url,
        pool_size=settings.db_pool_size + settings.db_max_overflow,
        sqlite_pool_size=settings.db_pool_size,
        sqlite_max_overflow=settings.db_max_overflow,
        connect_timeout_s=settings.db_connect_timeout_s,
        statement_timeout_ms=settings.db_statement_timeout_ms,
    )


def build_store(settings: Settings, events: Events) -> Store:
    return open_store(store_settings(settings), events)


def build_services(settings: Settings, routing: RoutingSource, metrics: Metrics) -> Services:
    spans = None
    if settings.otel_exporter_otlp_endpoint:
        from router_service.observability.otel import SpanExporter

        spans = SpanExporter(
            settings.otel_exporter_otlp_endpoint,
            settings.otel_service_name,
            counted=lambda result, n: metrics.otel_spans.labels(result).inc(n),
        )
    telemetry = Telemetry(metrics, spans=spans)
    store = build_store(settings, telemetry)
    client = HttpAgentClient(
        max_connections=settings.global_concurrency,
        max_response_bytes=settings.max_agent_response_bytes,
    )
    # One connection pool; the protocol decides only what travels over it.
    clients: dict[str, AgentClient] = {
        AgentProtocol.HTTP: client,
        AgentProtocol.A2A: A2aAgentClient(client),
    }
    dispatcher = Dispatcher(
        clients,
        telemetry,
        policy=settings.retry_policy,
        agent_timeout_s=settings.agent_timeout_ms / 1000,
        fanout_concurrency=settings.fanout_concurrency,
        global_concurrency=settings.global_concurrency,
        guard_policy=settings.guard_policy,
        sender_weight=SenderWeights(settings.sender_weight_map),
        sender_slots=settings.sender_max_agent_calls,
    )
    owner = instance_id()
    deadline_s = settings.request_deadline_ms / 1000
    shadow = None
    if settings.shadow_routing_config is not None:
        path = settings.shadow_routing_config
        shadow = RoutingSource(read_version(path), path)
    backlog = BacklogGauge(store, telemetry, settings.dlq_backlog_refresh_s)
    ctx = Collaborators(store, dispatcher, routing, telemetry, backlog, deadline_s, owner, shadow)
    replayer = Replayer(
        ctx,
        max_replays=settings.max_replays,
        backoff=RetryPolicy(
            max_attempts=settings.max_replays,
            base_s=settings.dlq_retry_base_s,
            cap_s=settings.dlq_retry_cap_s,
        ),
    )
    return Services(
        settings=settings,
        routing=routing,
        metrics=metrics,
        store=store,
        client=client,
        dispatcher=dispatcher,
        telemetry=telemetry,
        backlog=backlog,
        intake=Intake(ctx),
        replayer=replayer,
        replay_jobs=ReplayJobs(
            ctx, replayer, lease_s=settings.replay_job_lease_s, max_jobs=settings.replay_max_jobs
        ),
        sweeper=Sweeper(ctx, concurrency=settings.sweep_concurrency),
        owner=owner,
        senders=SenderLimiter(settings.sender_max_in_flight),
        reloader=RoutingReloader(routing, telemetry, peer_notifier()),
        shadow=shadow,
    )
