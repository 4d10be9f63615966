"""The issue's performance targets, each with its measured value: met, or not met by how much."""

from __future__ import annotations

from dataclasses import dataclass

from bench.results import (
    CPU_US,
    DRIFT_LIMIT,
    OPEN_P50_MS,
    OPEN_P99_MS,
    P50_AT_ONE_MS,
    RPS_AT_8,
    RSS_FLAT,
    RSS_MB,
    TOP_RATE,
    BenchResult,
    Spread,
)
from bench.runner import Run


@dataclass(frozen=True, slots=True)
class Verdict:
    target: str  # the system the goal is about
    goal: str
    measured: str
    met: bool | None  # None: not measured

    @property
    def outcome(self) -> str:
        if self.met is None:
            return "not measured"
        return "**met**" if self.met else "**not met**"


def _limit(
    value: float, limit: float, unit: str, digits: int = 2, *, floor: bool = False
) -> tuple[str, bool]:
    """'0.62 ms (0.38 ms, 38 % under)' and whether ``value`` is at most ``limit`` (at least,
    with ``floor``)."""
    gap = value - limit
    share = abs(gap) / limit * 100 if limit else 0.0
    side = "over" if gap > 0 else "under"
    text = f"{value:,.{digits}f} {unit} ({abs(gap):,.{digits}f} {unit}, {share:,.0f} % {side})"
    return text, gap >= 0 if floor else gap <= 0


SUSTAINED = 0.95  # an open-loop rate counts as sustained when 95 % of it was answered


def _conns(n: int) -> str:
    return f"{n} connection" + ("" if n == 1 else "s")


def _median(runs: list[Run], read: str) -> float | None:
    spread = Spread.of(_read(run, read) for run in runs)
    return spread.median if spread else None


def _read(run: Run, name: str) -> float | None:
    for part in (run.closed, run.open, run.server):
        if part is not None and hasattr(part, name):
            value = getattr(part, name)
            return float(value) if value is not None else None
    return None


def _latency(result: BenchResult, key: str, label: str) -> list[Verdict]:
    verdicts = []
    runs = result.runs(key, "closed", 1)
    p50 = _median(runs, "p50_ms")
    goal = f"p50 ≤ {P50_AT_ONE_MS:g} ms at 1 connection (closed loop)"
    if p50 is None:
        verdicts.append(Verdict(label, goal, "1 connection not run", None))
    else:
        text, ok = _limit(p50, P50_AT_ONE_MS, "ms")
        verdicts.append(Verdict(label, goal, text, ok))
    goal = f"throughput ≥ {RPS_AT_8:,.0f} req/s at 8 connections (closed loop)"
    achieved = _median(result.runs(key, "closed", 8), "throughput_rps")
    if achieved is None:
        verdicts.append(Verdict(label, goal, "8 connections not run", None))
    else:
        text, ok = _limit(achieved, RPS_AT_8, "req/s", 0, floor=True)
        verdicts.append(Verdict(label, goal, text, ok))
    rate = TOP_RATE if TOP_RATE in result.plan.rates else max(result.plan.rates, default=0.0)
    runs = result.runs(key, "open", rate)
    where = f"at {rate:,.0f} req/s open loop" + ("" if rate == TOP_RATE else " (not 2,000)")
    for name, limit, what in (("p50_ms", OPEN_P50_MS, "p50"), ("p99_ms", OPEN_P99_MS, "p99")):
        value = _median(runs, name)
        goal = f"{what} ≤ {limit:g} ms {where}"
        if value is None:
            verdicts.append(Verdict(label, goal, "not run", None))
            continue
        text, ok = _limit(value, limit, "ms")
        verdicts.append(Verdict(label, goal, text, ok if rate == TOP_RATE else None))
    drift = _median(runs, "drift")
    achieved = _median(runs, "throughput_rps") or 0.0
    goal = f"last-window p50 within {DRIFT_LIMIT * 100:.0f} % of the first, {where}"
    if drift is None:
        verdicts.append(Verdict(label, goal, "not run", None))
    else:
        text = f"{drift * 100:+.1f} % (limit ±{DRIFT_LIMIT * 100:.0f} %)"
        met = abs(drift) <= DRIFT_LIMIT if rate == TOP_RATE else None
        if achieved < SUSTAINED * rate:
            # Saturated: latency sits at the generator's outstanding cap from the first second,
            # so a flat p50 says nothing about degradation under a load the router sustains.
            text += f", but the rate was not sustained ({achieved:,.0f} req/s answered)"
            met = False if met is not None else None
        verdicts.append(Verdict(label, goal, text, met))
    return verdicts


def _resources(result: BenchResult, key: str, label: str) -> list[Verdict]:
    verdicts = []
    rate = max(result.plan.rates, default=0.0)
    cpu = _median(result.runs(key, "open", rate), "cpu_us_per_request")
    goal = f"CPU ≤ {CPU_US:g} µs/request (router process, at {rate:,.0f} req/s)"
    if cpu is None:
        verdicts.append(Verdict(label, goal, "not run", None))
    else:
        text, ok = _limit(cpu, CPU_US, "µs", 0)
        verdicts.append(Verdict(label, goal, text, ok))
    peaks = [
        max((r.server.hwm_mb for r in s.runs if r.server), default=0.0)
        for s in result.sessions
        if s.target == key and s.runs
    ]
    spread = Spread.of(peaks)
    goal = f"peak RSS ≤ {RSS_MB:g} MB (VmHWM over a whole session)"
    if spread is None:
        verdicts.append(Verdict(label, goal, "not run", None))
    else:
        text, ok = _limit(spread.median, RSS_MB, "MB", 1)
        verdicts.append(Verdict(label, goal, text, ok))
    soaks = [r.server for r in result.runs(key, "soak") if r.server and r.server.rss_before_mb]
    if soaks:
        growth = Spread.of(s.rss_mb / s.rss_before_mb - 1 for s in soaks)
        assert growth is not None
        goal = f"RSS flat over a second run at the top rate (growth ≤ {RSS_FLAT * 100:.0f} %)"
        text = f"{growth.median * 100:+.1f} % (worst {growth.high * 100:+.1f} %)"
        verdicts.append(Verdict(label, goal, text, growth.high <= RSS_FLAT))
    return verdicts


def _against_portkey(result: BenchResult, key: str, label: str) -> list[Verdict]:
    portkey = next((t for t in result.targets if t.key == "portkey"), None)
    if portkey is None or not result.ran("portkey"):
        reason = portkey.not_run if portkey and portkey.not_run else "run with --peers"
        goal = "more throughput than Portkey at every connection count; lower p50 at 8 and 64"
        return [Verdict(label, goal, f"Portkey not measured: {reason}", None)]
    verdicts = []
    for connections in result.plan.connections:
        ours = result.runs(key, "closed", connections)
        theirs = result.runs("portkey", "closed", connections)
        mine, other = _median(ours, "throughput_rps"), _median(theirs, "throughput_rps")
        goal = f"throughput > Portkey at {_conns(connections)}"
        if mine is None or other is None:
            verdicts.append(Verdict(label, goal, "not run", None))
        else:
            text = f"{mine:,.0f} vs {other:,.0f} req/s ({(mine / other - 1) * 100:+.0f} %)"
            verdicts.append(Verdict(label, goal, text, mine > other))
        if connections in (8, 64):
            mine, other = _median(ours, "p50_ms"), _median(theirs, "p50_ms")
            goal = f"p50 < Portkey at {_conns(connections)}"
            if mine is None or other is None:
                verdicts.append(Verdict(label, goal, "not run", None))
            else:
                text = f"{mine:.2f} vs {other:.2f} ms ({(mine / other - 1) * 100:+.0f} %)"
                verdicts.append(Verdict(label, goal, text, mine < other))
    return verdicts


def evaluate(result: BenchResult) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for target in result.targets:
        if target.role != "router":
            continue
        if not result.ran(target.key):
            reason = target.not_run or "did not start"
            verdicts.append(Verdict(target.label, "all targets", f"not run: {reason}", None))
            continue
        verdicts += _latency(result, target.key, target.label)
        verdicts += _resources(result, target.key, target.label)
        verdicts += _against_portkey(result, target.key, target.label)
    return verdicts
