"""`python -m bench --quick` end to end: real nginx, wrk, routers on Postgres and SQLite.

No timing is asserted: only that the harness runs every target, writes the report, and that the
router wrote exactly one row per 2xx answer in every run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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
    assert "nproc" in _section(report, "Machine")
