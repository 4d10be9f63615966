"""What the store returns and takes: rows of the log and the dead-letter queue, the queries
and pages over them, claims, replay results, and replay jobs with their filters. Plain frozen
data; the ``Store`` protocol that speaks in them is in ``ports.py``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from router_service.domain.outcome import Status


class StoredJson:
    """A JSON value as the store holds it, not parsed: what a page read with ``stored_json``
    carries, written into the answer as it is (``jsonwire.dumps``). Parsing a page's payloads
    and writing them again cost about 36 ms a MB of dense JSON, and the objects it made held
    the event loop in the collector's full passes (200-700 ms each). Not a dataclass: orjson
    would write a dataclass as an object of its fields."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoredJson) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"StoredJson({self.text[:60]!r})"


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One row of the signal log, as the service and the API see it."""

    log_id: str
    trace_id: str
    sender_id: str
    payload_hash: str
    payload: Any
    metadata: Any
    signal_ts: datetime
    kind: str
    rule: str
    mode: str
    routed_agents: list[str]
    status: Status
    results: Any  # the agents' results (a list), None before the outcome; or StoredJson
    response: Any
    latency_ms: float | None
    created_at: datetime
    updated_at: datetime
    # The routing file version that routed it (None: routed before versions were recorded).
    routing_version: str | None = None


SUPERSEDED = "superseded"  # what ``finish_replay`` says when its replayer's claim was taken


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    id: int
    log_id: str
    agent: str | None
    kind: str
    mode: str
    payload: Any
    error: str
    attempts: int
    replay_count: int
    status: str
    created_at: datetime
    last_attempt_at: datetime | None
    # Filled when the entry is claimed for replay: what the agents need to see again.
    sender_id: str = ""
    metadata: Any = None
    signal_ts: datetime | None = None
    trace_id: str = ""
    # The claim as its replayer took it: its finish counts only while the claim is the entry's
    # (``finish_replay``).
    claimed_by: str | None = None
    claim_expires_at: datetime | None = None


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LogQuery:
    sender_id: str | None = None
    kind: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 50
    cursor: str | None = None
    # payload, metadata, results and response as ``StoredJson``: a page written out as it is
    stored_json: bool = False


@dataclass(frozen=True, slots=True)
class DeadLetterQuery:
    status: str | None = "pending"
    agent: str | None = None
    kind: str | None = None
    limit: int = 50
    cursor: str | None = None
    log_id: str | None = None  # one signal's entries (the console's signal page)
    ids: tuple[int, ...] | None = None  # exactly these entries (the console's selection)
    stored_json: bool = False  # payload and metadata as ``StoredJson`` (``LogQuery``'s)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


# Where a prune stopped: the last deleted signal's key as its store holds it (opaque to callers).
PrunePosition = tuple[object, str]


@dataclass(frozen=True, slots=True)
class Pruned:
    """One batch of ``Store.prune``. The next batch starts after ``resume_after``, so the
    signals it had to keep are read once per run, not once per batch; None: the walk reached
    the retention's end."""

    deleted: int
    resume_after: PrunePosition | None


@dataclass(frozen=True, slots=True)
class Claim:
    """``record`` is None when this caller won the claim, else the row that already held it.
    ``claimed_at``: when the winner's row was created (its key in the log, with ``log_id``)."""

    record: LogRecord | None = None
    claimed_at: datetime | None = None

    @property
    def won(self) -> bool:
        return self.record is None


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """How one dead-letter replay ended, for ``Store.finish_replay``."""

    ok: bool
    error: str | None = None
    results: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    response: Any = None
    # False when no agent was called (every circuit open): the replay is put off, not spent.
    attempted: bool = True


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Which pending dead letters a replay takes: exact ``ids``, or entries matching every
    given field. ``agent`` matches the entry's agent, or for a whole-signal entry (fallback,
    first_success) an agent of its route; ``status`` is the signal's (``dead_lettered`` or
    ``partial``); ``since``/``until`` bound the entry's creation; ``error_contains`` is a
    case-insensitive substring. ``upto_id`` is the snapshot bound: larger ids came later."""

    ids: tuple[int, ...] | None = None
    sender_id: str | None = None
    kind: str | None = None
    agent: str | None = None
    status: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    error_contains: str | None = None
    upto_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = list(value)
            out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeadLetterFilter:
        values = dict(data)
        for name in ("since", "until"):
            if values.get(name) is not None:
                values[name] = datetime.fromisoformat(values[name])
        if values.get("ids") is not None:
            values["ids"] = tuple(values["ids"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class DeadLetterSurvey:
    """What a filter selects now: how many, the largest entry id (the snapshot bound), and the
    entries by (agent or None for a whole-signal entry, kind)."""

    count: int
    snapshot_id: int
    groups: list[tuple[str | None, str, int]]


@dataclass(frozen=True, slots=True)
class ReplayJobProgress:
    cursor_id: int  # every selected entry up to this id has been handled
    replayed: int = 0
    succeeded: int = 0
    failed: int = 0
    exhausted: int = 0
    deferred: int = 0


@dataclass(frozen=True, slots=True)
class ReplayJobRecord:
    id: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    state: str  # running, done, cancelled, failed
    filter: DeadLetterFilter
    rate: float | None
    max_entries: int | None
    selected: int
    progress: ReplayJobProgress
    cancel_requested: bool
    lease_owner: str | None
    lease_expires_at: datetime | None
    error: str | None


@dataclass(frozen=True, slots=True)
class ReplayAttemptRecord:
    """One replay of one dead-letter entry: part of its signal's delivery history."""

    log_id: str
    dead_letter_id: int
    job_id: int | None
    agent: str | None
    trace_id: str
    outcome: str  # succeeded, pending, exhausted, deferred
    error: str | None
    created_at: datetime
