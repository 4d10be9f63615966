"""The Health page's numbers: percentiles from the router's own latency histogram, and a small
ring buffer of samples taken every few seconds for the sparklines. In memory, per process; no
Prometheus needed."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from prometheus_client import Histogram

# (upper bound in seconds, cumulative count), ascending, ending with +Inf.
Buckets = list[tuple[float, float]]


def histogram_buckets(histogram: Histogram) -> Buckets:
    """Every label set of ``histogram`` added together."""
    totals: dict[float, float] = {}
    for metric in histogram.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                totals[bound] = totals.get(bound, 0.0) + sample.value
    return sorted(totals.items())


def quantile(buckets: Buckets, q: float) -> float | None:
    """Prometheus' ``histogram_quantile``: linear within the bucket; None without data."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound  # beyond the last finite bucket: its bound is all we know
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return lower_bound + (bound - lower_bound) * share
        lower_bound, lower_count = bound, count
    return lower_bound  # pragma: no cover - the +Inf bucket holds every observation


def subtract(now: Buckets, before: Buckets) -> Buckets:
    """The observations made between two readings of the same histogram."""
    earlier = dict(before)
    return [(bound, count - earlier.get(bound, 0.0)) for bound, count in now]


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # time.time()
    p50_ms: float | None
    p95_ms: float | None
    per_s: float
    in_flight: int


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


class Sampler:
    """Samples the latency histogram and the in-flight count every ``interval_s``."""

    def __init__(
        self,
        histogram: Histogram,
        in_flight: Callable[[], int],
        interval_s: float,
        keep: int = 120,
    ) -> None:
        self._histogram = histogram
        self._in_flight = in_flight
        self.interval_s = interval_s
        self.samples: deque[Sample] = deque(maxlen=keep)
        self._last = histogram_buckets(histogram)
        self._last_at = time.monotonic()

    def sample(self) -> Sample:
        now, now_at = histogram_buckets(self._histogram), time.monotonic()
        window = subtract(now, self._last)
        elapsed = max(now_at - self._last_at, 1e-9)
        taken = Sample(
            at=time.time(),
            p50_ms=_ms(quantile(window, 0.5)),
            p95_ms=_ms(quantile(window, 0.95)),
            per_s=(window[-1][1] if window else 0.0) / elapsed,
            in_flight=self._in_flight(),
        )
        self._last, self._last_at = now, now_at
        self.samples.append(taken)
        return taken

    def headline(self) -> tuple[float | None, float | None, float]:
        """p50 and p95 in ms and the count, over everything since the process started."""
        buckets = histogram_buckets(self._histogram)
        total = buckets[-1][1] if buckets else 0.0
        return _ms(quantile(buckets, 0.5)), _ms(quantile(buckets, 0.95)), total

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.sample()


def sparkline(values: Sequence[float | None], width: int = 240, height: int = 40) -> str:
    """The ``points`` of an SVG polyline for ``values`` (gaps drawn as zero), scaled to the
    largest; empty when there is nothing to draw."""
    if len(values) < 2:
        return ""
    numbers = [v or 0.0 for v in values]
    top = max(numbers) or 1.0
    step = width / (len(numbers) - 1)
    return " ".join(
        f"{i * step:.1f},{height - 2 - (v / top) * (height - 4):.1f}" for i, v in enumerate(numbers)
    )
