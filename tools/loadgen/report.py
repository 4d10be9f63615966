"""What the load generator reports: nearest-rank percentiles and per-request outcomes folded
into one report. Pure: tested without an event loop."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Final

PERCENTILES: Final = (50.0, 90.0, 95.0, 99.0)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted data: the smallest value >= q% of the data."""
    if not sorted_values:
        raise ValueError("percentile of no data")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    # Decimal keeps 7% of 100 at rank 7; as floats 7 / 100 * 100 is 7.000000000000001 -> rank 8.
    rank = math.ceil(Decimal(repr(q)) * len(sorted_values) / 100)
    return sorted_values[max(rank, 1) - 1]


@dataclass(frozen=True, slots=True)
class LatencySummary:
    count: int
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, latencies_ms: Sequence[float]) -> LatencySummary | None:
        """None for no data: a summary never invents a latency."""
        if not latencies_ms:
            return None
        data = sorted(latencies_ms)
        p50, p90, p95, p99 = (percentile(data, q) for q in PERCENTILES)
        return cls(len(data), p50, p90, p95, p99, data[-1])


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """What happened to one request; ``latency_ms`` is set only when an answer arrived."""

    index: int
    duplicate_sent: bool
    http_status: int | None = None
    router_status: str | None = None
    duplicate_answer: bool = False
    latency_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class LoadReport:
    mode: str
    requests: int
    answered: int
    duration_s: float
    throughput_rps: float
    latency: LatencySummary | None
    status_codes: dict[int, int]
    router_statuses: dict[str, int]
    duplicates_sent: int
    duplicates_answered: int
    errors: dict[str, int]
    seed: int
    target_rate: float | None = None

    @property
    def dropped(self) -> int:
        return self.errors.get("dropped", 0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status_codes"] = {str(code): n for code, n in self.status_codes.items()}
        return data


def summarise(
    outcomes: Sequence[RequestOutcome],
    duration_s: float,
    *,
    mode: str,
    seed: int,
    target_rate: float | None = None,
) -> LoadReport:
    """Fold per-request outcomes into the report (pure, so it is tested without a server)."""
    latencies = [o.latency_ms for o in outcomes if o.latency_ms is not None]
    answered = [o for o in outcomes if o.http_status is not None]
    sent = [o for o in outcomes if o.error != "dropped"]
    return LoadReport(
        mode=mode,
        requests=len(outcomes),
        answered=len(answered),
        duration_s=duration_s,
        throughput_rps=len(answered) / duration_s if duration_s > 0 else 0.0,
        latency=LatencySummary.of(latencies),
        status_codes=dict(
            sorted(Counter(o.http_status for o in answered if o.http_status).items())
        ),
        router_statuses=dict(Counter(o.router_status for o in answered if o.router_status)),
        duplicates_sent=sum(o.duplicate_sent for o in sent),
        duplicates_answered=sum(o.duplicate_answer for o in answered),
        errors=dict(Counter(o.error for o in outcomes if o.error)),
        seed=seed,
        target_rate=target_rate,
    )
