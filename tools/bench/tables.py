"""The report's tables: every figure is the median over the repetitions, with the spread
(min-max) in parentheses when there is more than one. Nothing here measures: it only folds and
formats what the runs hold."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from bench.results import BenchResult, Spread
from bench.runner import Mode, Run, ServerSample

DASH = "\u2013"  # en dash: "1.2 (1.1\u20131.4)"


def _num(value: float, digits: int) -> str:
    return f"{value:,.{digits}f}"


def fmt(spread: Spread | None, digits: int = 2) -> str:
    if spread is None:
        return DASH
    text = _num(spread.median, digits)
    if spread.n > 1:
        text += f" ({_num(spread.low, digits)}{DASH}{_num(spread.high, digits)})"
    return text


def _over(runs: Sequence[Run], read: Callable[[Run], float | None]) -> Spread | None:
    return Spread.of(read(run) for run in runs)


def _server(read: Callable[[ServerSample], float | None]) -> Callable[[Run], float | None]:
    return lambda run: read(run.server) if run.server else None


def level_label(run_mode: Mode, level: float) -> str:
    if run_mode == "closed":
        return f"{level:,.0f} conn"
    return f"{level:,.0f} req/s" + (", 2nd run" if run_mode == "soak" else "")


# --------------------------------------------------------------------------- tables


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def closed_table(result: BenchResult) -> list[str]:
    rows = []
    for target in result.targets:
        for connections in result.plan.connections:
            runs = result.runs(target.key, "closed", connections)
            if not runs:
                continue
            closed = [r for r in runs if r.closed]
            failures = sum(r.closed.non2xx + r.closed.socket_errors for r in closed if r.closed)
            rows.append(
                [
                    target.label,
                    str(connections),
                    fmt(_over(closed, lambda r: r.closed.throughput_rps if r.closed else None), 0),
                    fmt(_over(closed, lambda r: r.closed.p50_ms if r.closed else None)),
                    fmt(_over(closed, lambda r: r.closed.p90_ms if r.closed else None)),
                    fmt(_over(closed, lambda r: r.closed.p99_ms if r.closed else None)),
                    str(failures),
                    fmt(_over(closed, _server(lambda s: s.other_cores))),
                ]
            )
    header = ["target", "connections", "req/s", "p50 ms", "p90 ms", "p99 ms", "non-2xx + errors"]
    header.append("other load (cores)")
    return markdown_table(header, rows)


def open_table(result: BenchResult) -> list[str]:
    rows = []
    for target in result.targets:
        for rate in result.plan.rates:
            runs = [r for r in result.runs(target.key, "open", rate) if r.open]
            if not runs:
                continue
            lost = sum(r.open.dropped + r.open.errors for r in runs if r.open)
            rows.append(
                [
                    target.label,
                    _num(rate, 0),
                    fmt(_over(runs, lambda r: r.open.throughput_rps if r.open else None), 0),
                    fmt(_over(runs, lambda r: r.open.p50_ms if r.open else None)),
                    fmt(_over(runs, lambda r: r.open.p90_ms if r.open else None)),
                    fmt(_over(runs, lambda r: r.open.p99_ms if r.open else None)),
                    fmt(_over(runs, lambda r: r.open.first_p50_ms if r.open else None)),
                    fmt(_over(runs, lambda r: r.open.last_p50_ms if r.open else None)),
                    fmt(_over(runs, _drift_percent), 0),
                    str(lost),
                    fmt(_over(runs, _server(lambda s: s.other_cores))),
                ]
            )
    window = f"{result.plan.window_s:g}-s"
    header = [
        *("target", "rate req/s", "achieved req/s", "p50 ms", "p90 ms", "p99 ms"),
        *(f"first {window} p50", f"last {window} p50", "drift %", "dropped + errors"),
        "other load (cores)",
    ]
    return markdown_table(header, rows)


def _drift_percent(run: Run) -> float | None:
    drift = run.open.drift if run.open else None
    return None if drift is None else drift * 100


def _e2e_p50(run: Run) -> float | None:
    if run.closed:
        return run.closed.p50_ms
    return run.open.p50_ms if run.open else None


def server_table(result: BenchResult) -> list[str]:
    rows = []
    for target in result.targets:
        for mode, levels in (("closed", result.plan.connections), ("open", result.plan.rates)):
            for level in levels:
                runs = result.runs(target.key, mode, level)  # type: ignore[arg-type]
                if not runs:
                    continue
                rows.append(
                    [
                        target.label,
                        level_label(mode, level),  # type: ignore[arg-type]
                        fmt(_over(runs, _server(lambda s: s.cpu_us_per_request)), 0),
                        fmt(_over(runs, _server(lambda s: s.db_cpu_us_per_request)), 0),
                        fmt(_over(runs, _server(lambda s: s.hwm_mb)), 1),
                        fmt(_over(runs, _server(lambda s: s.overhead_p50_ms))),
                        fmt(_over(runs, _server(lambda s: s.overhead_p95_ms))),
                        fmt(_over(runs, _server(lambda s: s.server_p50_ms))),
                        fmt(_over(runs, _e2e_p50)),
                    ]
                )
    header = [
        *("target", "run", "CPU µs/req", "Postgres CPU µs/req", "peak RSS MB"),
        *("overhead p50 ms", "overhead p95 ms", "server p50 ms", "end-to-end p50 ms"),
    ]
    return markdown_table(header, rows)


def soak_table(result: BenchResult) -> list[str]:
    rows = []
    for target in result.targets:
        for run in result.runs(target.key, "soak"):
            if run.server is None:
                continue
            s = run.server
            growth = (s.rss_mb / s.rss_before_mb - 1) * 100 if s.rss_before_mb else 0.0
            rows.append(
                [
                    target.label,
                    str(run.rep),
                    _num(s.rss_before_mb, 1),
                    _num(s.rss_mb, 1),
                    f"{growth:+.1f}",
                    _num(s.hwm_mb, 1),
                ]
            )
    header = ["target", "rep", "RSS after 1st run MB", "RSS after 2nd run MB", "growth %"]
    return markdown_table([*header, "peak RSS MB"], rows)


NOISY_CORES = 0.25


def noise(result: BenchResult) -> list[str]:
    """How much of the machine other work took during the runs: figures to read with care."""
    runs = [run for s in result.sessions for run in s.runs if run.server]
    if not runs:
        return ["No runs."]
    other = Spread.of(r.server.other_cores for r in runs if r.server)
    steal = Spread.of(r.server.steal_cores for r in runs if r.server)
    noisy = [r for r in runs if r.server and r.server.other_cores > NOISY_CORES]
    repeated = sum(len(s.discarded) for s in result.sessions)
    retry = result.plan.retry_noisy_cores
    lines = [
        f"The machine is shared. During the runs, processes outside the benchmark used a median "
        f"of {fmt(other)} cores (of 2) and the hypervisor stole {fmt(steal)} cores."
    ]
    if retry:
        lines[0] += (
            f" A run during which other load exceeded {retry:g} cores was repeated once and the"
            f" quieter attempt kept ({repeated} runs were repeated)."
        )
    lines[0] += (
        f" {len(noisy)} of {len(runs)} kept runs still had more than {NOISY_CORES:g} cores of"
        " other load" + (":" if noisy else ".")
    )
    by_target: dict[str, list[float]] = {}
    for run in noisy:
        assert run.server is not None
        by_target.setdefault(result.label(run.target), []).append(run.server.other_cores)
    for label, cores in by_target.items():
        total = sum(1 for r in runs if result.label(r.target) == label)
        lines.append(f"- {label}: {len(cores)} of {total} runs, at most {max(cores):.2f} cores")
    return lines


def correctness(result: BenchResult) -> tuple[bool, list[str]]:
    rows, checked, failed = [], 0, 0
    for session in result.sessions:
        for run in [*session.runs, *session.discarded]:
            check = run.server.check if run.server else None
            if check is None:
                continue
            checked += 1
            failed += not check.passed
            extra = check.rows - check.ok
            exact = "exact" if extra == 0 else f"{extra:+d} without a 2xx"
            verdict = f"pass ({exact})" if check.passed else "**FAIL**"
            if run in session.discarded:
                verdict += ", repeated (noisier attempt, not in the figures)"
            rows.append(
                [
                    result.label(run.target),
                    str(run.rep),
                    level_label(run.mode, run.level),
                    str(check.rows),
                    str(check.ok),
                    str(check.unanswered),
                    str(check.duplicates),
                    verdict,
                ]
            )
    passed = checked > 0 and failed == 0
    summary = (
        f"Correctness: **{'passed' if passed else 'FAILED'}** "
        f"({checked - failed} of {checked} router runs)."
    )
    header = ["target", "rep", "run", "rows written", "2xx answers", "not 2xx", "duplicates"]
    return passed, [summary, "", *markdown_table([*header, "result"], rows)]


def glance_table(result: BenchResult) -> list[str]:
    """One row per target: the figures a reader looks for first."""
    plan = result.plan
    top = max(plan.rates, default=0.0)
    heavy = max(plan.connections, default=0)
    rows = []
    for target in result.targets:
        if not result.ran(target.key):
            continue
        row = [target.label]
        for connections in plan.connections:
            runs = result.runs(target.key, "closed", connections)
            row.append(fmt(_over(runs, lambda r: r.closed.throughput_rps if r.closed else None), 0))
        one = result.runs(target.key, "closed", min(plan.connections, default=1))
        row.append(fmt(_over(one, _e2e_p50)))
        opened = result.runs(target.key, "open", top)
        row.append(fmt(_over(opened, _e2e_p50)) if opened else "closed loop only")
        cost = opened or result.runs(target.key, "closed", heavy)
        row.append(fmt(_over(cost, _server(lambda s: s.cpu_us_per_request)), 0))
        sessions = [s for s in result.sessions if s.target == target.key and s.runs]
        peaks = [max((r.server.hwm_mb for r in s.runs if r.server), default=0.0) for s in sessions]
        row.append(fmt(Spread.of(peaks), 1))
        rows.append(row)
    header = [
        "target",
        *(f"req/s at {c} conn" for c in plan.connections),
        f"p50 ms at {min(plan.connections, default=1)} conn",
        f"p50 ms at {top:,.0f} req/s",
        f"CPU µs/req at {top:,.0f} req/s (peers: {heavy} conn)",
        "peak RSS MB",
    ]
    return markdown_table(header, rows)
