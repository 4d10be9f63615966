"""Request and response shapes of the HTTP API (also what the OpenAPI schema shows)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
)

from router_service.domain.errors import ValidationFailed
from router_service.domain.routing import Mode
from router_service.service.replay_jobs import (
    MAX_ENTRY_ID,
    MAX_IDS,
    MAX_RATE,
    MAX_SNAPSHOT_CHARS,
    MIN_RATE,
)

NoNul = Field(pattern=r"^[^\x00]*$")
# The log_id travels as the Idempotency-Key header: visible ASCII only, nothing to inject.
HeaderSafe = Field(pattern=r"^[\x21-\x7e]+$")


# RFC 3339's date-time (section 5.6): datetime.fromisoformat alone also takes ISO 8601's other
# spellings (week dates, the basic format, minutes only, offsets with seconds, a decimal comma).
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def parse_rfc3339(value: str, name: str = "timestamp") -> datetime:
    """An RFC 3339 timestamp with an offset (``Z`` or ``±hh:mm``), in UTC; the errors name
    ``name``."""
    if _RFC3339.fullmatch(value) is None:
        raise ValueError(
            f"{name} must be an RFC 3339 date-time with an offset, e.g. 2026-01-01T12:00:00Z"
        )
    try:
        moment = datetime.fromisoformat(value.upper())  # "t" and "z" may be lower case
    except ValueError as exc:  # a month 13, a second 60
        raise ValueError(f"{name} is not a valid date-time: {exc}") from exc
    return in_utc(moment, name)


def in_utc(moment: datetime, name: str) -> datetime:
    """``moment`` in UTC (a naive one taken as UTC). ValueError naming ``name`` when UTC cannot
    hold it: an offset can move a moment of year 1 or 9999 past the calendar's ends, where
    Python's datetime overflows."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(
            f"{name} is out of range: in UTC it falls outside years 1 to 9999"
        ) from exc


def utc_bound(moment: datetime, name: str) -> datetime:
    """``in_utc`` for a filter's bound read outside a schema: a ``ValidationFailed`` (422)."""
    try:
        return in_utc(moment, name)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from exc


def query_bound(text: str | None, name: str) -> datetime | None:
    """A query's time bound: RFC 3339 with an offset, as in every body (a lax reading took
    ``since=2027`` for Unix second 2027 and a bare date for its midnight in UTC); 422 else."""
    if text is None:
        return None
    try:
        return parse_rfc3339(text, name)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from exc


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sender_id: Annotated[StrictStr, Field(min_length=1, max_length=256), NoNul]
    payload: dict[StrictStr, Any]
    log_id: Annotated[StrictStr, Field(min_length=1, max_length=128), HeaderSafe] | None = None
    timestamp: StrictStr | None = Field(
        None, description="RFC 3339 date-time; default: the time the router received it"
    )
    metadata: dict[StrictStr, Any] | None = None
    mode: Mode | None = None

    @field_validator("timestamp")
    @classmethod
    def _rfc3339(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rfc3339(value)
        return value


class AgentResultOut(BaseModel):
    agent: str
    ok: bool
    status_code: int | None
    attempts: int
    latency_ms: float
    response: Any
    error: str | None


class RouteResponse(BaseModel):
    log_id: str
    trace_id: str
    kind: str
    rule: str
    mode: Mode
    routed_agents: list[str]
    status: Literal["delivered", "partial", "dead_lettered"]
    results: list[AgentResultOut]
    response: Any
    duplicate: bool
    latency_ms: float


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    limit: Annotated[StrictInt, Field(ge=1, le=10_000)] | None = None
    # Entry ids are 64-bit database keys: anything outside cannot exist (and would overflow).
    ids: (
        Annotated[
            list[Annotated[StrictInt, Field(ge=1, le=MAX_ENTRY_ID)]],
            Field(min_length=1, max_length=MAX_IDS),
        ]
        | None
    ) = None
    # A selection by filter (every given field must match), previewed or run as a job.
    sender_id: Annotated[StrictStr, Field(min_length=1, max_length=256), NoNul] | None = None
    kind: Annotated[StrictStr, Field(min_length=1, max_length=64), NoNul] | None = None
    agent: Annotated[StrictStr, Field(min_length=1, max_length=128), NoNul] | None = None
    status: Literal["dead_lettered", "partial"] | None = Field(
        None, description="the signal's status"
    )
    since: StrictStr | None = Field(None, description="entries created at or after (RFC 3339)")
    until: StrictStr | None = Field(None, description="entries created before (RFC 3339)")
    error_contains: Annotated[StrictStr, Field(min_length=1, max_length=500), NoNul] | None = None
    dry_run: StrictBool = Field(
        False, description="count, sample and agents concerned; sends nothing"
    )
    snapshot: Annotated[StrictStr, Field(min_length=1, max_length=MAX_SNAPSHOT_CHARS)] | None = (
        Field(
            None, description="a dry run's snapshot: handle exactly its set, nothing created since"
        )
    )
    # A JSON number (an integer too); never a string or a boolean.
    rate: Annotated[StrictFloat, Field(ge=MIN_RATE, le=MAX_RATE)] | None = Field(
        None, description="entries per second; a paced replay runs as a background job"
    )
    max: Annotated[StrictInt, Field(ge=1, le=10_000_000)] | None = None
    background: StrictBool = Field(False, description="run as a background job whatever its size")

    @field_validator("since", "until")
    @classmethod
    def _rfc3339(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rfc3339(value)
        return value

    @property
    def is_selection(self) -> bool:
        """Anything beyond the original ``limit``/``ids`` makes it a guarded selection."""
        simple = {"limit", "ids"}
        return bool(self.model_fields_set - simple)

    @field_validator("ids", mode="before")
    @classmethod
    def _some_ids(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError(
                "'ids' is empty: list the dead-letter ids to replay (GET /dlq shows them), "
                "or give 'limit' instead"
            )
        return value


class DeferredReason(BaseModel):
    agent: str
    reason: Literal["circuit_open"]
    entries: int
    retry_in_s: float = Field(description="until the agent's circuit lets a probe through")
    message: str


class ReplayResponse(BaseModel):
    replayed: int
    succeeded: int
    failed: int
    exhausted: int
    deferred: int = Field(description="not sent because the agent's circuit is open; still pending")
    deferred_reasons: list[DeferredReason] = Field(description="why, per agent")


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with its ``$defs`` inlined, to embed in the OpenAPI document
    (where ``#/$defs/...`` references would not resolve)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
