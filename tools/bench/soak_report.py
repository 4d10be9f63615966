"""The soak's section of docs/performance.md, its verdict, and its raw figures as JSON.

The section sits between two markers and is replaced on each soak; the rest of the file belongs
to the comparison (``python -m bench``), which keeps the section when it rewrites the file.
Nothing here measures: it only folds and formats what the windows hold.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.probes import TableStats
from bench.soak import KEYS, LEASES, PHASES, SIGNALS, Phase, SoakPlan, SoakResult, Window
from bench.tables import DASH, markdown_table

BEGIN = "<!-- soak:begin -->"
END = "<!-- soak:end -->"
THROUGHPUT_LIMIT = 0.10  # the last window's throughput within 10 % of the first's
P99_LIMIT = 1.5  # the last window's p99 within 1.5x of the first's

HOW_TO_RUN = """\
```bash
make soak                                       # 10 min closed loop, then 10 min open loop
make soak ARGS="--closed-minutes 1 --open-minutes 1 --window 20"  # a short check
.venv/bin/python -m bench --soak --quick --out /tmp/performance.md   # 30 s + 30 s, 10-s windows
```

Options: `--closed-minutes M` and `--open-minutes M` (default 10 each; 0 leaves a phase out),
`--connections C` (closed loop, default 8), `--rates R` (open loop, req/s, default 1000),
`--window S` (seconds per row, default 60; the verdict needs two per phase), `--out FILE`
(default docs/performance.md; only this section is replaced), `--postgres-url` (the server; the
soak creates its own database `router_soak_<random>` on it, migrates it with
`router-service migrate` and drops it at the end, also after a failure or Ctrl-C),
`--log-level`, `--keep-temp`, `--from-raw FILE` (render this section again from a soak's raw
figures, kept in `tools/bench/.cache/runs/soak-*.json`). `--quick` is 30 s of each phase in 10-s
windows at 8 connections and 200 req/s: the test suite runs it. The exit status is 0 when
every window was measured, whatever the verdict."""

METHOD = """\
One router process (`router-service serve --workers 1`, pinned to CPU 1, production log level)
on the fresh database, one agent (nginx answering at once), load from CPU 0, every request a new
signal, nothing warmed up. The closed loop runs wrk once per window, back to back (wrk reports
once per run); the open loop runs the project's load generator once per window (request *i* due
at *i*/rate, latency from that intended time). Between two windows the load pauses for the
readings and the next tool's start, about a second; the requests still in flight at a window's
end are answered before the next one starts. Before each phase the harness runs `sync` and
`CHECKPOINT`, so that a phase's first window does not write back what was dirtied before it:
the closed loop's pages for the open loop, and for the closed loop the new database's and
whatever else the machine wrote last (a soak right after an install had its first minute's
p99 at 19 ms against 5 ms in every other, with a 66 ms flush); the time each took, in the
notes, says how much was left. The verdict compares each phase's last window with its first:
throughput within ±10 %, p99 within 1.5x either way (a first window much slower than the last
is no stable start either)."""

COLUMNS = """\
- **req/s, p50, p99**: what the load tool saw in that window (answers per second; latency
  percentiles measured by the client). **failed**: non-2xx answers, socket errors, timeouts and
  (open loop) requests dropped because 1,024 were outstanding; "This run" names them by kind
  and window (`reused_connection_closed`: a kept connection closed under the request before
  any answer, the keep-alive race).
- **router CPU**: utime + stime of the router's process tree from `/proc` during the window,
  per 2xx answer. **PG CPU**: the same for the Postgres backends serving the soak's database
  (listed in `pg_stat_activity` before and after the window; a backend that closed meanwhile is
  missing). **PG server CPU**: the whole Postgres server's process tree, reaped children
  included, so autovacuum, the WAL writer and the checkpointer count; it also holds whatever
  other databases on the server did meanwhile, so it is an upper bound (a dash when Postgres
  does not run on this machine). **PG reads/signal**: blocks Postgres read into its
  `shared_buffers` for the soak's database during the window (`blks_read` of
  `pg_stat_database`, from the OS's cache or the disk), per 2xx answer: near 0 while the pages
  the writes touch fit in the buffers, rising when they no longer do.
- **heap, indexes, total MB**: `pg_relation_size`, `pg_indexes_size` and
  `pg_total_relation_size` of `signals` (summed over partitions, if it has any) after the window;
  **leases MB**: `pg_total_relation_size` of `signal_leases`; **keys index MB**:
  `pg_indexes_size` of `idempotency_keys`, the deduplication index, keyed by a hash, so its
  inserts land on random pages and all of it is the writes' working set (each a dash when the
  schema has no such table).
- **rows**: `n_live_tup` of `signals` (the statistics' estimate); **dead**: `n_dead_tup`.
- **HOT % cum.**: `n_tup_hot_upd / n_tup_upd` of `signals` since the start; **HOT % win.**: the
  same over this window alone (a dash when nothing was updated). The statistics views lag the writes
  by about a second.
- **autovac, autoanalyze**: `autovacuum_count` and `autoanalyze_count` of `signals`, cumulative.
- **RSS MB**: VmRSS of the router's process tree after the window.
- **other load**: CPU the rest of the machine used during the window, in cores (noise).
- **stolen**: CPU time the hypervisor gave to other machines (`steal` in `/proc/stat`), in
  cores; **I/O stalled %**: the share of the window during which every task that could run
  waited on I/O (`full` in `/proc/pressure/io`; a dash where the kernel does not report it):
  the disk's stalls, which hold every commit and so every signal; **checkpoints**: checkpoints
  the Postgres server began in the window (`pg_stat_bgwriter`); **slowest flush ms**: the
  slowest of the probe's flushes in the window (8 KiB written and `fdatasync`ed every 20 ms on
  the filesystem of Postgres's WAL, by a thread of the harness; a dash when the soak's directory
  is on another filesystem): how long one stall of the disk held every commit. All four are
  noise for the router's own figures: a p99 that jumps in a window with a slow flush and falls
  back in the next is the disk, not drift."""

GENERATED = (
    "Generated by `python -m bench --soak` (`make soak`); replaced on each soak, while "
    "`make bench` keeps it."
)
HEADER = (
    *("phase", "window", "req/s", "p50 ms", "p99 ms", "failed"),
    *("router CPU µs/signal", "PG CPU µs/signal", "PG server CPU µs/signal", "PG reads/signal"),
    *("heap MB", "indexes MB", "total MB", "leases MB", "keys index MB", "rows", "dead"),
    *("HOT % cum.", "HOT % win.", "autovac", "autoanalyze", "RSS MB", "other load (cores)"),
    *("stolen (cores)", "I/O stalled %", "checkpoints", "slowest flush ms"),
)


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True, slots=True)
class PhaseVerdict:
    phase: Phase
    level: float
    first: Window | None  # the phase's first measured window
    last: Window | None  # its last, when it is another one

    @property
    def throughput_change(self) -> float | None:
        if self.first is None or self.last is None or not self.first.throughput_rps:
            return None
        return self.last.throughput_rps / self.first.throughput_rps - 1

    @property
    def p99_ratio(self) -> float | None:
        if self.first is None or self.last is None:
            return None
        if not self.first.p99_ms or self.last.p99_ms is None:
            return None
        return self.last.p99_ms / self.first.p99_ms

    @property
    def stable(self) -> bool | None:
        change, ratio = self.throughput_change, self.p99_ratio
        if change is None or ratio is None:
            return None
        return abs(change) <= THROUGHPUT_LIMIT and 1 / P99_LIMIT <= ratio <= P99_LIMIT

    def text(self) -> str:
        what = phase_label(self.phase, self.level)
        change, ratio = self.throughput_change, self.p99_ratio
        if change is None or ratio is None or self.first is None or self.last is None:
            return f"{what}: not measured (fewer than two windows)"
        first, last = self.first, self.last
        outcome = "stable" if self.stable else "DRIFTED"
        return (
            f"{what}: {outcome} (throughput {first.throughput_rps:,.0f} → "
            f"{last.throughput_rps:,.0f} req/s, {change * 100:+.1f} %, limit ±"
            f"{THROUGHPUT_LIMIT * 100:.0f} %; p99 {first.p99_ms or 0:.2f} → "
            f"{last.p99_ms or 0:.2f} ms, x{ratio:.2f}, limit x{P99_LIMIT:g}{_noise(first, last)})"
        )


def _noise(first: Window, last: Window) -> str:
    """What the machine did in the two windows compared, when it was measured."""
    text = ""
    if first.io_stalled is not None and last.io_stalled is not None:
        text += (
            f"; I/O stalled {first.io_stalled * 100:.1f} → {last.io_stalled * 100:.1f} % of the "
            f"window, stolen {first.stolen_cores:.2f} → {last.stolen_cores:.2f} cores"
        )
    if first.slowest_flush_ms is not None and last.slowest_flush_ms is not None:
        flushes = f"{first.slowest_flush_ms:,.1f} → {last.slowest_flush_ms:,.1f}"
        text += f"; slowest disk flush {flushes} ms"
    return text


def phase_label(phase: Phase, level: float) -> str:
    if phase == "closed":
        return f"closed loop at {level:,.0f} connections"
    return f"open loop at {level:,.0f} req/s"


def verdicts(result: SoakResult) -> list[PhaseVerdict]:
    found = []
    for phase in PHASES:
        if not result.plan.windows(phase):
            continue
        measured = [w for w in result.phase(phase) if w.error is None]
        first = measured[0] if measured else None
        last = measured[-1] if len(measured) > 1 else None
        found.append(PhaseVerdict(phase, result.plan.level(phase), first, last))
    return found


def verdict_line(result: SoakResult) -> str:
    found = verdicts(result)
    if not found:
        return "Soak verdict: nothing measured"
    stable = [v.stable for v in found]
    overall = "DRIFT" if False in stable else "not measured" if None in stable else "no drift"
    return f"Soak verdict: {overall}. " + "; ".join(v.text() for v in found) + "."


# --------------------------------------------------------------------------- table


def _num(value: float | None, digits: int = 0) -> str:
    return DASH if value is None else f"{value:,.{digits}f}"


def _mb(value: int | None) -> str:
    return DASH if value is None else f"{value / 2**20:,.1f}"


def _per_signal(count: int | None, signals: int) -> float | None:
    return None if count is None or not signals else count / signals


def _ratio(part: int, whole: int) -> float | None:
    return part / whole * 100 if whole > 0 else None


def _table_cells(
    stats: TableStats | None,
    before: TableStats | None,
    leases: TableStats | None,
    keys: TableStats | None,
) -> list[str]:
    """The columns from heap MB to autoanalyze."""
    if stats is None:
        return [DASH] * 11
    hot_window = None
    if before is not None:
        updates = stats.updates - before.updates
        hot_window = _ratio(stats.hot_updates - before.hot_updates, updates)
    return [
        *(_mb(stats.heap_bytes), _mb(stats.index_bytes), _mb(stats.total_bytes)),
        _mb(leases.total_bytes if leases else None),
        _mb(keys.index_bytes if keys else None),
        *(_num(stats.live_rows), _num(stats.dead_rows)),
        *(_num(_ratio(stats.hot_updates, stats.updates), 1), _num(hot_window, 1)),
        *(str(stats.autovacuums), str(stats.autoanalyzes)),
    ]


def window_rows(result: SoakResult) -> list[list[str]]:
    """One row per window; the per-window HOT ratio is against the previous reading."""
    rows = []
    before = result.baseline.get(SIGNALS)
    for window in result.windows:
        head = [window.phase, str(window.index)]
        if window.error:
            rows.append([*head, f"error: {window.error}", *([DASH] * (len(HEADER) - 3))])
            continue
        signals = window.tables.get(SIGNALS)
        tables = window.tables
        cells = _table_cells(signals, before, tables.get(LEASES), tables.get(KEYS))
        before = signals or before
        rows.append(
            [
                *head,
                *(_num(window.throughput_rps), _num(window.p50_ms, 2), _num(window.p99_ms, 2)),
                _num(window.failed),
                _num(window.per_signal_us(window.router_cpu_s)),
                _num(window.per_signal_us(window.db_cpu_s)),
                _num(window.per_signal_us(window.server_cpu_s)),
                _num(_per_signal(window.blocks_read, window.ok), 1),
                *cells,
                _num(window.rss_mb, 1),
                _num(window.other_cores, 2),
                _num(window.stolen_cores, 2),
                _num(None if window.io_stalled is None else window.io_stalled * 100, 1),
                _num(window.checkpoints),
                _num(window.slowest_flush_ms, 1),
            ]
        )
    return rows


# --------------------------------------------------------------------------- section


def _this_run(result: SoakResult) -> list[str]:
    plan = result.plan
    quick = " (`--quick`: for the test suite; not figures to quote)" if result.quick else ""
    lines = [
        f"### This run{quick}",
        "",
        f"- started {result.started}, took {result.elapsed_s / 60:.1f} min: `{result.command}`",
    ]
    for phase in PHASES:
        if plan.windows(phase):
            lines.append(
                f"- {phase_label(phase, plan.level(phase))}: {plan.windows(phase)} windows "
                f"of {plan.window_s} s"
            )
    ok = sum(w.ok for w in result.windows)
    rows = DASH if result.rows_at_end is None else f"{result.rows_at_end:,}"
    lines.append(f"- rows in `signals` at the end: {rows}; 2xx answers: {ok:,}")
    lines.append(f"- failed requests: {failures_text(result)}")
    return lines + [f"- {note}" for note in result.notes]


def failures_text(result: SoakResult) -> str:
    """Each window's failures by kind, or "none"."""
    parts = []
    for window in result.windows:
        if window.failed:
            kinds = ", ".join(f"{n:,} {kind}" for kind, n in sorted(window.failures.items()))
            parts.append(
                f"{window.phase} {window.index}: {window.failed:,} ({kinds or 'kind not recorded'})"
            )
    return "; ".join(parts) or "none"


def render_section(result: SoakResult) -> str:
    parts = [
        [BEGIN, "## Soak", "", GENERATED],
        ["### How to run", "", HOW_TO_RUN],
        ["### Method", "", METHOD],
        _this_run(result),
        [f"**{verdict_line(result)}**"],
        [
            f"### Per window ({result.plan.window_s} s each)",
            "",
            *markdown_table(HEADER, window_rows(result)),
        ],
        ["### What each column means", "", COLUMNS],
        ["### Machine", "", *markdown_table(["", ""], [list(row) for row in result.machine])],
        [END],
    ]
    return "\n\n".join("\n".join(part) for part in parts) + "\n"


def _split(text: str) -> tuple[str, str | None, str]:
    """Before the section, the section (markers included) or None, after it."""
    start = text.find(BEGIN)
    end = text.find(END, start)
    if start < 0 or end < 0:
        return text, None, ""
    end += len(END)
    return text[:start], text[start:end], text[end:]


def replace_section(text: str, section: str) -> str:
    """``text`` with its soak section replaced by ``section``, or ``section`` appended."""
    before, old, after = _split(text)
    if old is None:
        return text.rstrip("\n") + "\n\n" + section if text.strip() else section
    return before + section.rstrip("\n") + after


def keep_section(old: str, new: str) -> str:
    """``new`` (a whole report without a soak section) with the soak section of ``old``."""
    section = _split(old)[1]
    return new if section is None else replace_section(new, section + "\n")


def write_section(path: Path, result: SoakResult) -> None:
    text = path.read_text() if path.exists() else ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(replace_section(text, render_section(result)))


# --------------------------------------------------------------------------- raw


def dump(result: SoakResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(result), indent=1))


def _tables(data: dict[str, dict[str, int]]) -> dict[str, TableStats]:
    return {name: TableStats(**stats) for name, stats in data.items()}


def _window(data: dict[str, Any]) -> Window:
    return Window(**{**data, "tables": _tables(data["tables"])})


def load(path: Path) -> SoakResult:
    data = json.loads(path.read_text())
    return SoakResult(
        **{k: v for k, v in data.items() if k not in {"plan", "machine", "baseline", "windows"}},
        plan=SoakPlan(**data["plan"]),
        machine=[(str(k), str(v)) for k, v in data["machine"]],
        baseline=_tables(data["baseline"]),
        windows=[_window(w) for w in data["windows"]],
    )
