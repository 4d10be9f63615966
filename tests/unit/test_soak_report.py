"""The soak's report: the verdict's limits, the per-window HOT ratio, the delimited section of
docs/performance.md that the soak replaces and the comparison keeps, the raw figures."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from bench.__main__ import write_report
from bench.probes import TableStats
from bench.soak import SoakPlan, SoakResult, Window
from bench.soak_report import (
    BEGIN,
    END,
    HEADER,
    dump,
    load,
    render_section,
    replace_section,
    verdict_line,
    verdicts,
    window_rows,
)

PLAN = SoakPlan(closed_minutes=2, open_minutes=2, connections=8, rate=1000, window_s=60)
EMPTY = TableStats(0, 0, 0, 0, 0, 0, 0, 0, 0)


def _stats(updates: int, hot: int, rows: int = 1000) -> TableStats:
    return TableStats(8 * 2**20, 4 * 2**20, 13 * 2**20, rows, 10, updates, hot, 1, 2)


def _window(phase: str, index: int, rps: float, p99: float, **tables: TableStats) -> Window:
    return Window(
        phase,  # type: ignore[arg-type]
        index,
        8 if phase == "closed" else 1000,
        ended_s=60.0 * index,
        duration_s=60.0,
        answered=int(rps * 60),
        ok=int(rps * 60),
        throughput_rps=rps,
        p50_ms=p99 / 4,
        p99_ms=p99,
        router_cpu_s=20.0,
        db_cpu_s=10.0,
        server_cpu_s=12.0,
        rss_mb=70.0,
        blocks_read=int(rps * 60 * 2.5),
        tables=tables or {"signals": _stats(0, 0)},
    )


def _result(*windows: Window) -> SoakResult:
    return SoakResult(
        command="python -m bench --soak",
        quick=False,
        plan=PLAN,
        machine=[("CPUs (nproc)", "2")],
        baseline={"signals": EMPTY},
        windows=list(windows),
        rows_at_end=1000,
    )


def test_a_phase_is_stable_within_ten_percent_throughput_and_one_and_a_half_times_p99() -> None:
    result = _result(
        _window("closed", 1, 1000, 10.0),
        _window("closed", 2, 910, 14.0),  # -9 %, x1.4: stable
        _window("open", 1, 1000, 10.0),
        _window("open", 2, 1000, 16.0),  # x1.6: drifted
    )
    closed, opened = verdicts(result)
    assert closed.stable is True
    assert opened.stable is False
    line = verdict_line(result)
    assert line.startswith("Soak verdict: DRIFT.")
    assert "closed loop at 8 connections: stable" in line
    assert "open loop at 1,000 req/s: DRIFTED" in line


def test_drift_counts_either_way_and_one_window_is_not_measured() -> None:
    slower = _result(_window("closed", 1, 1000, 10.0), _window("closed", 2, 880, 10.0))
    faster = _result(_window("closed", 1, 1000, 10.0), _window("closed", 2, 1000, 6.0))
    assert verdicts(slower)[0].stable is False  # -12 % throughput
    assert verdicts(faster)[0].stable is False  # p99 x0.6: the first window was no stable start
    single = _result(_window("closed", 1, 1000, 10.0), _window("open", 1, 1000, 10.0))
    assert [v.stable for v in verdicts(single)] == [None, None]
    assert verdict_line(single).startswith("Soak verdict: not measured.")


def test_hot_ratio_is_cumulative_and_per_window_and_leases_show_when_the_table_exists() -> None:
    leases = TableStats(2**20, 2**20, 3 * 2**20, 5, 0, 0, 0, 0, 0)
    keys = TableStats(2**20, 7 * 2**20, 8 * 2**20, 5, 0, 0, 0, 0, 0)
    grown = {"signals": _stats(300, 150), "signal_leases": leases, "idempotency_keys": keys}
    rows = window_rows(
        _result(
            _window("closed", 1, 1000, 10.0, signals=_stats(100, 0)),
            _window("closed", 2, 1000, 10.0, **grown),
        )
    )
    column = {name: index for index, name in enumerate(HEADER)}
    assert all(len(row) == len(HEADER) for row in rows)
    assert [r[column["HOT % cum."]] for r in rows] == ["0.0", "50.0"]
    assert [r[column["HOT % win."]] for r in rows] == ["0.0", "75.0"]
    assert [r[column["leases MB"]] for r in rows] == ["\u2013", "3.0"]
    assert [r[column["keys index MB"]] for r in rows] == ["\u2013", "7.0"]  # its indexes only
    assert rows[0][column["PG reads/signal"]] == "2.5"
    assert rows[0][column["router CPU µs/signal"]] == "333"  # 20 s over 60,000 signals
    assert rows[0][column["total MB"]] == "13.0"


def test_the_section_replaces_its_previous_version_and_leaves_the_rest_intact() -> None:
    section = render_section(_result(_window("closed", 1, 1000, 10.0)))
    assert section.startswith(BEGIN)
    assert section.rstrip().endswith(END)
    report = "# Performance\n\nthe comparison\n"
    once = replace_section(report, section)
    assert once.startswith(report)
    again = replace_section(once + "\n## After\n", section.replace("1,000", "2,000"))
    assert again.count(BEGIN) == 1
    assert again.count(END) == 1
    assert again.startswith(report)
    assert again.endswith("\n## After\n")
    assert "2,000" in again


def test_the_comparison_keeps_the_soak_section_when_it_rewrites_the_report(tmp_path: Path) -> None:
    out = tmp_path / "performance.md"
    section = render_section(_result(_window("closed", 1, 1000, 10.0)))
    out.write_text(replace_section("# Performance\n\nold comparison\n", section))
    write_report(out, "# Performance\n\nnew comparison\n")
    text = out.read_text()
    assert "new comparison" in text
    assert "old comparison" not in text
    assert section.strip() in text


def test_raw_figures_render_the_same_section_again(tmp_path: Path) -> None:
    result = _result(
        _window("closed", 1, 1000, 10.0, signals=_stats(100, 0)),
        _window("open", 1, 1000, 12.0, signals=_stats(300, 150), signal_leases=EMPTY),
    )
    dump(result, tmp_path / "soak.json")
    assert load(tmp_path / "soak.json") == result


def test_the_machine_table_gives_a_cpu_speed_to_compare_runs_by() -> None:
    from bench.environment import cpu_speed

    text = cpu_speed(additions=200_000)
    seconds, _, rest = text.partition(" s per 10 million Python additions")
    assert float(seconds) > 0
    assert rest == " (lower is faster)"


@pytest.mark.postgres
def test_the_machine_table_names_the_postgres_settings_the_figures_depend_on() -> None:
    from bench.environment import machine
    from tests.conftest import PG_ADMIN

    settings = dict(machine(PG_ADMIN, peers=False))["Postgres settings"]
    names = [item.split(" = ")[0] for item in settings.split(", ")]
    assert names == [
        *("autovacuum", "checkpoint_timeout", "fsync", "max_wal_size", "shared_buffers"),
        "synchronous_commit",
    ]
    assert "autovacuum = on" in settings or "autovacuum = off" in settings


def test_the_machine_noise_of_each_window_is_shown_and_named_in_the_verdict() -> None:
    calm = _window("closed", 1, 1000, 10.0)
    stalled = _window("closed", 2, 1000, 40.0)
    result = _result(
        dataclasses.replace(
            calm, stolen_cores=0.01, io_stalled=0.004, checkpoints=0, slowest_flush_ms=6.25
        ),
        dataclasses.replace(
            stalled, stolen_cores=0.2, io_stalled=0.125, checkpoints=2, slowest_flush_ms=344.9
        ),
    )
    column = {name: index for index, name in enumerate(HEADER)}
    rows = window_rows(result)
    assert [r[column["I/O stalled %"]] for r in rows] == ["0.4", "12.5"]
    assert [r[column["stolen (cores)"]] for r in rows] == ["0.01", "0.20"]
    assert [r[column["checkpoints"]] for r in rows] == ["0", "2"]
    assert [r[column["slowest flush ms"]] for r in rows] == ["6.2", "344.9"]
    line = verdict_line(result)
    assert "DRIFTED" in line  # the verdict is the rule's; the noise only stands beside it
    assert "I/O stalled 0.4 → 12.5 % of the window, stolen 0.01 → 0.20 cores" in line
    assert "slowest disk flush 6.2 → 344.9 ms" in line
    unknown = _result(_window("closed", 1, 1000, 10.0), _window("closed", 2, 1000, 10.0))
    assert "I/O stalled" not in verdict_line(unknown)  # no pressure figures: nothing claimed
    assert "flush" not in verdict_line(unknown)
    assert window_rows(unknown)[0][column["I/O stalled %"]] == "\u2013"


def test_pressure_stall_seconds_are_read_from_the_full_line() -> None:
    from bench.probes import full_stall_seconds

    text = (
        "some avg10=7.18 avg60=10.06 avg300=11.13 total=304594502\n"
        "full avg10=4.44 avg60=8.70 avg300=9.90 total=231423308\n"
    )
    assert full_stall_seconds(text) == 231.423308
    assert full_stall_seconds("some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n") is None


def test_each_window_s_failures_are_named_by_kind_and_survive_the_raw_figures(
    tmp_path: Path,
) -> None:
    failing = dataclasses.replace(
        _window("open", 4, 1000, 19.5),
        failed=3,
        failures={"timeout": 1, "HTTP 503": 2},
    )
    result = _result(_window("closed", 1, 1000, 10.0), failing)
    section = render_section(result)
    assert "- failed requests: open 4: 3 (2 HTTP 503, 1 timeout)" in section
    assert "- failed requests: none" in render_section(_result(_window("closed", 1, 1000, 10.0)))
    dump(result, tmp_path / "soak.json")
    assert load(tmp_path / "soak.json").windows[1].failures == {"timeout": 1, "HTTP 503": 2}
