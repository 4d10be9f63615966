"""The one typed settings object, read from the environment and an optional ``.env``."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from router_service.domain.breaker import GuardPolicy
from router_service.domain.retry import RetryPolicy

DEFAULT_DATABASE_URL = "sqlite:///./var/router.db"
DEFAULT_ROUTING_CONFIG = Path(__file__).with_name("routing.yaml")


IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted_proxies(raw: str) -> tuple[IpNetwork, ...]:
    """``TRUSTED_PROXIES``: comma-separated addresses or CIDR blocks."""
    networks = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError as exc:
            raise ValueError(f"TRUSTED_PROXIES: {entry!r} is not an address or CIDR") from exc
    return tuple(networks)


def normalise_database_url(url: str) -> str:
    """Accept the usual spellings and always use an async driver underneath."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"DATABASE_URL is not a URL: {url!r}")
    base = scheme.split("+", 1)[0]
    if base in {"postgres", "postgresql"}:
        return f"postgresql+asyncpg://{rest}"
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    raise ValueError(f"DATABASE_URL must be a postgresql:// or sqlite:// URL, not {scheme}://")


# A share a million times another's is already "almost never"; below that, a weight asked
# the round robin for ever more rounds (1e-12 held the event loop without end).
MIN_SENDER_WEIGHT = 0.001
MAX_SENDER_WEIGHT = 1000


def parse_weights(text: str) -> dict[str, float]:
    """``SENDER_WEIGHTS``: ``prefix=weight`` pairs, comma-separated; ``ValueError`` if bad."""
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        prefix, sep, value = item.rpartition("=")
        if not sep or not prefix:
            raise ValueError(f"expected prefix=weight, got {item!r}")
        try:
            weight = float(value)
        except ValueError:
            raise ValueError(f"weight of {prefix!r} is not a number: {value!r}") from None
        if not MIN_SENDER_WEIGHT <= weight <= MAX_SENDER_WEIGHT:
            raise ValueError(
                f"weight of {prefix!r} must be in [{MIN_SENDER_WEIGHT}, {MAX_SENDER_WEIGHT}],"
                f" got {value}"
            )
        if prefix in weights:
            raise ValueError(f"{prefix!r} is given a weight twice")
        weights[prefix] = weight
    return weights


class Settings(BaseSettings):
    """Every setting, with its environment variable (the field name in upper case)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    database_url: str = DEFAULT_DATABASE_URL
    api_key: SecretStr | None = None
    api_keys: SecretStr | None = None
    routing_config: Path = DEFAULT_ROUTING_CONFIG
    routing_watch: bool = False

    request_deadline_ms: int = Field(3000, gt=0)
    agent_timeout_ms: int = Field(1000, gt=0)
    retry_max_attempts: int = Field(3, ge=1)
    retry_base_ms: int = Field(50, ge=0)
    retry_cap_ms: int = Field(500, ge=0)
    max_replays: int = Field(5, ge=1)
    fanout_concurrency: int = Field(16, ge=1)
    global_concurrency: int = Field(256, ge=1)
    max_body_bytes: int = Field(256 * 1024, ge=1024)
    max_json_depth: int = Field(32, ge=2)
    # Optional: by default only MAX_BODY_BYTES bounds strings and arrays, so any body under the
    # body limit is admitted; operators may set a tighter bound.
    max_string_chars: int | None = Field(None, ge=1)
    max_array_items: int | None = Field(None, ge=1)
    max_header_bytes: int = Field(16 * 1024, ge=1024)
    header_timeout_s: float = Field(10.0, gt=0)
    body_timeout_s: float = Field(10.0, gt=0)
    # A client must take its answer too: the router's writes may wait this long for it to read.
    send_timeout_s: float = Field(30.0, gt=0)
    # Longer than a load balancer's or a client pool's idle timeout (see api/keep_alive.py).
    keep_alive_s: float = Field(75.0, gt=0)
    max_idle_connections: int = Field(512, ge=1)
    # Connections one client may hold, and all together (0: the open-files limit less the
    # router's own sockets); see api/connection_limits.py.
    max_connections_per_client: int = Field(256, ge=1)
    max_connections: int = Field(0, ge=0)
    api_keys_file: Path | None = None
    auth_failures_per_minute: int = Field(20, ge=1)
    # Peers whose X-Forwarded-For names the real client (load balancers, ingress).
    trusted_proxies: str = ""
    max_agent_response_bytes: int = Field(1024 * 1024, ge=1024)

    breaker_failures: int = Field(5, ge=1)
    breaker_cooldown_s: float = Field(10.0, gt=0)
    retry_budget_ratio: float = Field(0.2, ge=0)
    retry_budget_min: int = Field(10, ge=0)
    retry_budget_window_s: float = Field(10.0, gt=0)

    db_pool_size: int = Field(10, ge=1)
    db_max_overflow: int = Field(10, ge=0)
    db_connect_timeout_s: float = Field(2.0, gt=0)
    db_statement_timeout_ms: int = Field(5000, gt=0)
    dlq_backlog_refresh_s: float = Field(15.0, gt=0)
    startup_db_wait_s: float = Field(30.0, ge=0)
    sweep_interval_s: float = Field(5.0, gt=0)
    sweep_concurrency: int = Field(32, ge=1)
    drain_timeout_s: float = Field(10.0, ge=0)
    max_in_flight: int = Field(512, ge=1)
    sender_max_in_flight: int = Field(0, ge=0)  # 0: no per-sender limit
    # Agent slots one sender may hold at once (a signal to several agents takes several);
    # 0: no cap beyond SENDER_MAX_IN_FLIGHT's signals.
    sender_max_agent_calls: int = Field(0, ge=0)
    sender_weights: str = ""  # "prefix=weight,..." for the fair share of agent slots
    dlq_worker_enabled: bool = False
    dlq_worker_rate: float = Field(50.0, gt=0)
    dlq_worker_interval_s: float = Field(1.0, gt=0)
    dlq_retry_base_s: float = Field(5.0, ge=0)
    dlq_retry_cap_s: float = Field(300.0, ge=0)
    replay_job_lease_s: float = Field(30.0, gt=0)
    replay_job_poll_s: float = Field(2.0, gt=0)
    replay_max_jobs: int = Field(4, ge=1)  # background replay jobs one process runs at once
    shadow_routing_config: Path | None = None

    # The console's session cookies are signed with this; unset: a random secret per process
    # (sessions end on restart; `serve --workers N` shares one among its workers).
    console_secret: SecretStr | None = None
    console_session_hours: float = Field(8.0, gt=0)
    console_sample_interval_s: float = Field(5.0, gt=0)

    log_level: str = "INFO"
    otel_exporter_otlp_endpoint: str | None = None
    otel_service_name: str = "router-service"

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("sender_weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        parse_weights(value)
        return value

    @cached_property
    def sender_weight_map(self) -> dict[str, float]:
        return parse_weights(self.sender_weights)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, value: str) -> str:
        parse_trusted_proxies(value)
        return value

    @cached_property
    def trusted_proxy_networks(self) -> tuple[IpNetwork, ...]:
        return parse_trusted_proxies(self.trusted_proxies)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @cached_property
    def guard_policy(self) -> GuardPolicy:
        return GuardPolicy(
            failure_threshold=self.breaker_failures,
            cooldown_s=self.breaker_cooldown_s,
            retry_ratio=self.retry_budget_ratio,
            min_retries=self.retry_budget_min,
            window_s=self.retry_budget_window_s,
        )

    @cached_property
    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.retry_max_attempts,
            base_s=self.retry_base_ms / 1000,
            cap_s=self.retry_cap_ms / 1000,
        )
