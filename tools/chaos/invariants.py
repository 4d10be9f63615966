"""The invariants, as pure functions over what a scenario recorded (no I/O, no clock).

Evidence is three lists and two facts about the faults:

- ``answers``: every client request to ``/route`` and what came back (status 0: no answer);
- ``receipts``: every request an agent received, with its ``Idempotency-Key`` and trace id, and
  whether it was an *effect* (the agent was answering success in time, so the work was done);
- ``log_rows`` / ``dead_letters``: the ``signals`` and ``dead_letters`` tables at the end;
- ``crash_affected``: the log ids whose dispatch a fault may have interrupted (in flight on a
  killed router, during a database outage, claimed by a killed replayer); a signal the router
  answered 503 ``database_unavailable`` counts too, the database having failed under it.

The checks:

(a) every 2xx/202 answer has its log row in a final state, and a parked signal has a dead letter;
    a miss is *lost*;
(b) per (idempotency key, agent) at most one effect. A second dispatch caused by a client
    duplicate (the receipts carry two client requests' trace ids) is a *duplicate dispatch*, and so
    is any repeated effect that neither a fault nor the router's own recorded retries explain;
    repeated effects of a crash-affected log id, or of an attempt that timed out after the agent
    took it (the row records several attempts), are *redeliveries* under the same key and are
    reported; a receipt whose key is missing or is not the body's ``log_id`` is a violation;
(c) no 5xx from client input: 503 ``database_unavailable``/``overloaded`` are expected during a
    fault and reported; any other 5xx (500 above all) is a violation; no answer at all is a
    violation unless the request was crash-affected;
(d) dead letters are unique per (log id, agent);
(e) no signal is left ``in_progress`` once the scenario has waited out the leases (*stuck*).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

ACKNOWLEDGED = frozenset({200, 202})
EXPECTED_503_CODES = frozenset({"database_unavailable", "overloaded"})
FINAL_STATUSES = frozenset({"delivered", "partial", "dead_lettered"})
PARKED_STATUSES = frozenset({"partial", "dead_lettered"})
_EXAMPLES = 3
# Attempts a dispatch makes at most: the stack runs the router with this RETRY_MAX_ATTEMPTS.
RETRY_MAX_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Answer:
    """One client request to ``/route`` and its outcome."""

    log_id: str
    status: int  # 0: no answer (connection refused or reset, client timeout)
    trace_id: str
    started: float = 0.0  # wall clock (time.time), comparable with receipts and fault windows
    ended: float = 0.0
    code: str | None = None  # the error code of a JSON error body
    error: str | None = None  # what the client saw when there was no answer
    target: str = ""
    replayed: bool = False  # the answer carried Idempotent-Replayed: true
    retry_after: str | None = None  # the Retry-After header, if any


@dataclass(frozen=True, slots=True)
class Receipt:
    """One request an agent received."""

    agent: str
    key: str | None  # the Idempotency-Key header
    body_log_id: str | None
    trace_id: str | None
    at: float = 0.0
    effect: bool = True


@dataclass(frozen=True, slots=True)
class LogRow:
    log_id: str
    status: str
    # Attempts per agent, as the router recorded them in the row's results (last dispatch).
    attempts: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    log_id: str
    agent: str  # '' for a whole-signal entry
    status: str = "pending"


@dataclass(frozen=True, slots=True)
class Evidence:
    answers: Sequence[Answer]
    receipts: Sequence[Receipt]
    log_rows: Sequence[LogRow]
    dead_letters: Sequence[DeadLetter]
    crash_affected: frozenset[str] = frozenset()
    # (log_id, agent) -> replays the router recorded as failed ('' : every agent of the signal)
    failed_replays: Mapping[tuple[str, str], int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: str  # "a", "b", "c", "d", "e", or a scenario's own check
    detail: str

    def __str__(self) -> str:
        return f"({self.invariant}) {self.detail}"


@dataclass(slots=True)
class Verdict:
    requests: int = 0
    acknowledged: int = 0
    lost: int = 0
    duplicate_dispatches: int = 0
    redeliveries: int = 0
    retries: int = 0  # of the redeliveries, those the router's recorded retries explain
    stuck: int = 0
    server_errors: int = 0  # 5xx that are violations (500 above all)
    expected_503: int = 0
    no_answer: int = 0
    dlq_duplicates: int = 0
    violations: list[Violation] = field(default_factory=list)

    @property
    def five_xx(self) -> int:
        return self.server_errors + self.expected_503

    @property
    def passed(self) -> bool:
        return not self.violations


def _examples(items: Iterable[str]) -> str:
    listed = sorted(items)
    shown = ", ".join(listed[:_EXAMPLES])
    more = len(listed) - _EXAMPLES
    return shown + (f" and {more} more" if more > 0 else "")


def _found(invariant: str, what: str, items: Iterable[str]) -> Violation:
    listed = list(items)
    return Violation(invariant, f"{len(listed)} {what}: {_examples(listed)}")


def check_acknowledged_recorded(
    answers: Sequence[Answer], rows: Sequence[LogRow], letters: Sequence[DeadLetter]
) -> tuple[int, list[Violation]]:
    """(a) Returns the number of lost signals (distinct log ids) and the violations."""
    status_of = {r.log_id: r.status for r in rows}
    parked = {d.log_id for d in letters}
    missing: set[str] = set()
    unfinished: set[str] = set()
    no_letter: set[str] = set()
    for answer in answers:
        if answer.status not in ACKNOWLEDGED:
            continue
        status = status_of.get(answer.log_id)
        if status is None:
            missing.add(answer.log_id)
        elif status not in FINAL_STATUSES:
            unfinished.add(answer.log_id)
        elif (answer.status == 202 or status in PARKED_STATUSES) and answer.log_id not in parked:
            no_letter.add(answer.log_id)
    violations = []
    if missing:
        violations.append(_found("a", "acknowledged signals have no log row", missing))
    if unfinished:
        violations.append(_found("a", "acknowledged signals are still in_progress", unfinished))
    if no_letter:
        violations.append(_found("a", "acknowledged parked signals have no dead letter", no_letter))
    return len(missing | unfinished | no_letter), violations


@dataclass(frozen=True, slots=True)
class DispatchCount:
    duplicates: int
    redeliveries: int  # after a fault, or retries the router recorded (``retries``)
    retries: int
    violations: list[Violation]


def check_dispatches(
    receipts: Sequence[Receipt],
    answers: Sequence[Answer],
    touched: frozenset[str],
    rows: Sequence[LogRow] = (),
    failed_replays: Mapping[tuple[str, str], int] | None = None,
) -> DispatchCount:
    """(b) Receipts per (idempotency key, agent).

    A repeated effect is explained by a fault that touched the signal (``touched``), or by the
    router's own retries: an attempt that timed out after the agent had taken the request, which
    the router records as more than one attempt for that agent, or a replay it recorded as failed
    (up to ``RETRY_MAX_ATTEMPTS`` attempts each, any of which the agent may have taken before
    the router gave up on it; the log's attempts are the last dispatch's only). Anything else
    is a duplicate.
    """
    failed = failed_replays or {}
    client_traces: dict[str, set[str]] = defaultdict(set)
    for answer in answers:
        client_traces[answer.log_id].add(answer.trace_id)
    attempts = {row.log_id: row.attempts for row in rows}
    groups: dict[tuple[str, str], list[Receipt]] = defaultdict(list)
    bad_keys: list[str] = []
    for receipt in receipts:
        if receipt.key is None or receipt.key != receipt.body_log_id:
            bad_keys.append(f"{receipt.agent}:{receipt.key!r}!={receipt.body_log_id!r}")
            continue
        groups[(receipt.key, receipt.agent)].append(receipt)
    duplicates = redeliveries = retries = 0
    from_clients: set[str] = set()
    unexplained: set[str] = set()
    for (key, agent), group in groups.items():
        # Any receipt, effect or not: a client duplicate must never reach an agent at all.
        traces = {r.trace_id for r in group if r.trace_id in client_traces[key]}
        by_clients = max(0, len(traces) - 1)
        if by_clients:
            from_clients.add(f"{key}@{agent}")
        effects = sum(1 for r in group if r.effect)
        again = max(0, effects - 1 - by_clients)
        if key in touched:
            redeliveries += again
            again = 0
        replays = failed.get((key, agent), 0) + failed.get((key, ""), 0)
        allowance = attempts.get(key, {}).get(agent, 1) - 1 + RETRY_MAX_ATTEMPTS * replays
        retried = min(again, max(0, allowance))
        redeliveries += retried
        retries += retried
        if again > retried:
            unexplained.add(f"{key}@{agent}")
            by_clients += again - retried
        duplicates += by_clients
    violations = []
    if bad_keys:
        what = "receipts without the log_id as Idempotency-Key"
        violations.append(_found("b", what, bad_keys))
    if from_clients:
        what = "(log_id, agent) reached by a client duplicate (two client traces)"
        violations.append(_found("b", what, from_clients))
    if unexplained:
        what = (
            "(log_id, agent) with repeated effects that no fault, no recorded retry and no "
            "replay recorded as failed explain (a sweep of a live signal, a replay done twice)"
        )
        violations.append(_found("b", what, unexplained))
    return DispatchCount(duplicates, redeliveries, retries, violations)


def check_server_errors(
    answers: Sequence[Answer], crash_affected: frozenset[str]
) -> tuple[int, int, int, list[Violation]]:
    """(c) Returns (violating 5xx, expected 503, unexplained no-answers, violations)."""
    bad: Counter[str] = Counter()
    expected = 0
    silent: set[str] = set()
    for answer in answers:
        if answer.status == 503 and answer.code in EXPECTED_503_CODES:
            expected += 1
        elif answer.status >= 500:
            bad[f"{answer.status} {answer.code or '(no code)'}"] += 1
        elif answer.status == 0 and answer.log_id not in crash_affected:
            silent.add(f"{answer.log_id} ({answer.error})")
    violations = []
    if bad:
        listed = ", ".join(f"{n}x {what}" for what, n in bad.most_common())
        violations.append(Violation("c", f"server errors: {listed}"))
    if silent:
        violations.append(_found("c", "requests got no answer outside any fault", silent))
    return sum(bad.values()), expected, len(silent), violations


def check_dead_letters_unique(letters: Sequence[DeadLetter]) -> tuple[int, list[Violation]]:
    """(d)"""
    counts = Counter((d.log_id, d.agent) for d in letters)
    repeated = {f"{log_id}@{agent or '*'}" for (log_id, agent), n in counts.items() if n > 1}
    extra = sum(n - 1 for n in counts.values() if n > 1)
    if not repeated:
        return 0, []
    return extra, [_found("d", "(log_id, agent) with more than one dead letter", repeated)]


def check_not_stuck(rows: Sequence[LogRow]) -> tuple[int, list[Violation]]:
    """(e)"""
    stuck = {r.log_id for r in rows if r.status not in FINAL_STATUSES}
    if not stuck:
        return 0, []
    return len(stuck), [_found("e", "signals left in_progress after the leases expired", stuck)]


def touched_by_faults(evidence: Evidence) -> frozenset[str]:
    """The scenario's crash-affected log ids, plus those the router itself answered 503
    ``database_unavailable``: the database failed under that very signal (a killed connection
    is found dead only when a later statement fails on it, outside the moment of the kill)."""
    failed = {
        a.log_id for a in evidence.answers if a.status == 503 and a.code == "database_unavailable"
    }
    return evidence.crash_affected | failed


def evaluate(evidence: Evidence) -> Verdict:
    """Every invariant over one scenario's evidence."""
    verdict = Verdict(
        requests=len(evidence.answers),
        acknowledged=sum(1 for a in evidence.answers if a.status in ACKNOWLEDGED),
    )
    verdict.lost, lost = check_acknowledged_recorded(
        evidence.answers, evidence.log_rows, evidence.dead_letters
    )
    dispatches = check_dispatches(
        evidence.receipts,
        evidence.answers,
        touched_by_faults(evidence),
        evidence.log_rows,
        evidence.failed_replays,
    )
    verdict.duplicate_dispatches = dispatches.duplicates
    verdict.redeliveries = dispatches.redeliveries
    verdict.retries = dispatches.retries
    verdict.server_errors, verdict.expected_503, verdict.no_answer, errors = check_server_errors(
        evidence.answers, evidence.crash_affected
    )
    verdict.dlq_duplicates, unique = check_dead_letters_unique(evidence.dead_letters)
    verdict.stuck, stuck = check_not_stuck(evidence.log_rows)
    verdict.violations = [*lost, *dispatches.violations, *errors, *unique, *stuck]
    return verdict


def dispatched_after_503(answers: Sequence[Answer], receipts: Sequence[Receipt]) -> set[str]:
    """Log ids answered 503 whose own request's trace reached an agent anyway (then or through
    the sweeper, which reuses the stored trace): a client told "nothing was dispatched" that
    retries gets the stored answer, and the agent saw the signal. Reported, not a violation."""
    reached = {r.trace_id for r in receipts}
    return {a.log_id for a in answers if a.status == 503 and a.trace_id in reached}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def in_windows(started: float, ended: float, windows: Iterable[tuple[float, float]]) -> bool:
    """Whether the interval [started, ended] overlaps any fault window."""
    return any(started <= end and ended >= begin for begin, end in windows)
