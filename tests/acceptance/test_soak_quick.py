"""`python -m bench --soak --quick` end to end: a fresh Postgres database, the router, nginx,
wrk and the open-loop generator, every window read from /proc and the statistics views.

No timing is asserted: only that the harness measured every window, wrote a table of numbers
with the expected rows and columns and a verdict into its section of a copy of the report,
left the rest of that copy intact and dropped its database.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from bench.soak_report import BEGIN, END, HEADER
from tests.conftest import PG_ADMIN

ROOT = Path(__file__).resolve().parents[2]
REPORT = ROOT / "docs" / "performance.md"
NUMBER = re.compile(r"^-?[\d,]+(\.\d+)?$")
# Absent by nature: the leases table before the schema has one, the whole Postgres server's CPU
# when it does not run on this machine, the disk probe when the soak's directory is not on the
# WAL's filesystem.
MAY_BE_ABSENT = {"leases MB", "PG server CPU µs/signal", "slowest flush ms"}


def _table(section: str) -> list[list[str]]:
    lines = section.split("### Per window", 1)[1].split("\n\n", 2)[1].splitlines()
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    assert cells[0] == list(HEADER)
    return cells[2:]


def _outside(report: str) -> str:
    """The report without its soak section."""
    if BEGIN not in report:
        return report.strip()
    return (report.split(BEGIN)[0] + report.split(END)[1]).strip()


async def _database_exists(name: str) -> bool:
    conn = await asyncpg.connect(PG_ADMIN, timeout=10)
    try:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))
    finally:
        await conn.close()


@pytest.mark.postgres
@pytest.mark.timeout(600)
def test_quick_soak_writes_its_table_and_verdict_into_a_copy_of_the_report(
    tmp_path: Path,
) -> None:
    out = tmp_path / "performance.md"
    shutil.copy(REPORT, out)
    before = out.read_text()
    real = hashlib.sha256(REPORT.read_bytes()).hexdigest()
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--soak", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Soak verdict:" in done.stdout
    text = out.read_text()
    assert text.count(BEGIN) == 1
    assert text.count(END) == 1
    assert _outside(text) == _outside(before)
    section = text.split(BEGIN)[1].split(END)[0]

    rows = _table(section)
    assert [(r[0], r[1]) for r in rows] == [
        (p, str(i)) for p in ("closed", "open") for i in (1, 2, 3)
    ]
    for row in rows:
        for name, cell in zip(HEADER[2:], row[2:], strict=True):
            if not (name in MAY_BE_ABSENT and cell == "\u2013"):
                assert NUMBER.match(cell), f"{name} is not a number: {cell!r} in {row}"
    last = dict(zip(HEADER, rows[-1], strict=True))
    assert float(last["rows"].replace(",", "")) > 0
    assert float(last["heap MB"]) > 0
    assert float(last["keys index MB"]) > 0  # the deduplication index is read as well

    verdict = next(line for line in section.splitlines() if line.startswith("**Soak verdict:"))
    assert "closed loop at 8 connections:" in verdict
    assert "open loop at 200 req/s:" in verdict
    # What the machine dirtied before each phase was written back before the phase began.
    for when in ("before the load", "between the phases"):
        assert re.search(rf"^- sync and CHECKPOINT {when}: [\d.]+ s$", section, re.M), section
    name = re.search(r"`(router_soak_[0-9a-f]+)`", section)
    assert name is not None
    assert not asyncio.run(_database_exists(name[1]))
    assert hashlib.sha256(REPORT.read_bytes()).hexdigest() == real
