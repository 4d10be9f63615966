"""`python -m bench --quick` end to end: real nginx, wrk, routers on Postgres and SQLite.

No timing is asserted: only that the harness runs every target, writes the report, and that the
router wrote exactly one row per 2xx answer in every run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.probes import histogram_buckets, histogram_quantile
from bench.runner import Check

ROOT = Path(__file__).resolve().parents[2]
TARGETS = ("nginx (direct)", "nginx (reverse proxy)", "router (Postgres)", "router (SQLite)")


def _section(report: str, title: str) -> str:
    return report.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_quick_bench_writes_a_report_with_every_target_and_passing_checks(tmp_path: Path) -> None:
    out = tmp_path / "performance.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = out.read_text()
    for title in ("Closed loop (wrk)", "Open loop", "Server cost per run"):
        section = _section(report, title)
        for target in TARGETS:
            assert f"| {target} |" in section, f"no row for {target} in {title}"
    checks = _section(report, "Correctness")
    assert "Correctness: **passed**" in checks
    assert "FAIL" not in checks.replace("**passed**", "")
    for heading in ("## How to run", "## Machine", "## Targets"):
        assert heading in report
    machine = _section(report, "Machine")
    assert "nproc" in machine
    # What a message to a process on the other core costs: measured, not "not measured".
    assert "µs on the other core" in machine
    # Every target of the issue has its verdict row, measured (the quick run has 8 connections).
    targets = _section(report, "Targets")
    for goal in (
        "p50 ≤ 1 ms at 1 connection",
        "throughput ≥ 2,500 req/s at 8 connections (closed loop) | ",
        "CPU ≤ 350 µs/request",
        "peak RSS ≤ 80 MB",
    ):
        assert f"| router (Postgres) | {goal}" in targets, goal
    assert "8 connections not run" not in targets


METRICS = """\
# TYPE router_overhead_seconds histogram
router_overhead_seconds_bucket{kind="default",le="0.001"} 2.0
router_overhead_seconds_bucket{kind="default",le="0.002"} 6.0
router_overhead_seconds_bucket{kind="default",le="+Inf"} 8.0
router_overhead_seconds_bucket{kind="policy",le="0.001"} 2.0
router_overhead_seconds_bucket{kind="policy",le="0.002"} 2.0
router_overhead_seconds_bucket{kind="policy",le="+Inf"} 2.0
router_latency_seconds_bucket{kind="default",le="0.001"} 100.0
"""


def test_histogram_quantile_sums_label_sets_and_interpolates_like_prometheus() -> None:
    buckets = histogram_buckets(METRICS, "router_overhead_seconds")
    assert buckets == {0.001: 4.0, 0.002: 8.0, float("inf"): 10.0}
    # rank 5 of 10 lies in (0.001, 0.002] which holds ranks 5..8: a quarter of the way in.
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.00125)
    assert histogram_quantile(0.2, buckets) == pytest.approx(0.0005)  # first bucket from 0
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.002)  # +Inf: highest bound
    assert histogram_quantile(0.5, {}) is None


def test_correctness_check_allows_only_requests_in_flight_at_the_stop() -> None:
    assert Check.of(rows=100, ok=100, unanswered=0, duplicates=0).passed
    assert Check.of(rows=104, ok=100, unanswered=8, duplicates=0).passed
    assert not Check.of(rows=109, ok=100, unanswered=8, duplicates=0).passed
    assert not Check.of(rows=99, ok=100, unanswered=8, duplicates=0).passed
    assert not Check.of(rows=100, ok=100, unanswered=0, duplicates=1).passed
