"""``python -m bench.console``: the console's server time per page on a log of 100,000 signals.

For each backend (a fresh SQLite file, a fresh Postgres database): migrate, fill the log with
``--signals`` signals spread over a week (about 1 % dead-lettered, each with a pending dead
letter), start ``router-service serve`` as its own process, sign in, and load every page
``--repeat`` times. The time is the server's own, from the ``Server-Timing`` header the console
sets (rendering included, network excluded). Prints one Markdown table per backend.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.environment import DEFAULT_POSTGRES, create_database, database_url, drop_database
from router_service.adapters.db.migrate import upgrade
from router_service.config.settings import normalise_database_url

KEY = "bench-console-key"
KINDS = ("policy", "support", "billing", "feedback", "default")
BIN = Path(sys.executable).parent


def rows(count: int) -> Iterator[tuple[Any, ...]]:
    """(log_id, sender, kind, status, created_at) oldest first; every 100th dead-lettered."""
    start = datetime.now(UTC) - timedelta(days=7)
    step = timedelta(days=7) / count
    for n in range(count):
        status = "dead_lettered" if n % 100 == 7 else "delivered"
        yield f"bench-{n:07d}", f"sender-{n % 500}", KINDS[n % 5], status, start + step * n


def signal_values(
    log_id: str, sender: str, kind: str, status: str, at: datetime
) -> tuple[Any, ...]:
    payload = '{"message":"bench signal %s","ticket":{"priority":3}}' % log_id  # noqa: UP031
    results = (
        '[{"agent":"general-agent","ok":%s,"status_code":%s,"attempts":1,"latency_ms":3.2,'
        '"response":null,"error":%s}]'
        % (("false", "503", '"HTTP 503"') if status == "dead_lettered" else ("true", "200", "null"))
    )
    return (
        log_id, sender, "0" * 64, payload, "{}", at, secrets.token_hex(16), kind, "bench-rule",
        "fallback", '["general-agent"]', status, results, "null", 4.2, at, at,
    )  # fmt: skip


COLUMNS = (
    "log_id", "sender_id", "payload_hash", "payload", "metadata", "signal_ts", "trace_id", "kind",
    "rule", "mode", "routed_agents", "status", "results", "response", "latency_ms", "created_at",
    "updated_at",
)  # fmt: skip
LETTER_COLUMNS = (
    "log_id", "agent", "kind", "mode", "error", "attempts", "replay_count", "status",
    "created_at", "last_attempt_at",
)  # fmt: skip


def letter_values(log_id: str, kind: str, at: datetime) -> tuple[Any, ...]:
    return (log_id, "", kind, "fallback", "general-agent: HTTP 503", 3, 0, "pending", at, at)


def fill_sqlite(path: str, count: int) -> None:
    with sqlite3.connect(path) as conn:
        data = list(rows(count))
        # SQLAlchemy keeps SQLite timestamps as naive UTC text.
        iso = [(*r[:4], r[4].replace(tzinfo=None).isoformat(sep=" ")) for r in data]
        conn.executemany(
            "INSERT INTO idempotency_keys (log_id, created_at) VALUES (?, ?)",
            [(r[0], r[4]) for r in iso],
        )
        marks = ", ".join("?" * len(COLUMNS))
        conn.executemany(
            f"INSERT INTO signals ({', '.join(COLUMNS)}) VALUES ({marks})",  # noqa: S608
            [signal_values(*r) for r in iso],
        )
        marks = ", ".join("?" * len(LETTER_COLUMNS))
        conn.executemany(
            f"INSERT INTO dead_letters ({', '.join(LETTER_COLUMNS)}) VALUES ({marks})",  # noqa: S608
            [letter_values(r[0], r[2], r[4]) for r in iso if r[3] == "dead_lettered"],
        )
        conn.execute("ANALYZE")


async def fill_postgres(url: str, count: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        data = list(rows(count))
        await conn.copy_records_to_table(
            "idempotency_keys",
            records=[(r[0], r[4]) for r in data],
            columns=["log_id", "created_at"],
        )
        await conn.copy_records_to_table(
            "signals", records=[signal_values(*r) for r in data], columns=list(COLUMNS)
        )
        await conn.copy_records_to_table(
            "dead_letters",
            records=[letter_values(r[0], r[2], r[4]) for r in data if r[3] == "dead_lettered"],
            columns=list(LETTER_COLUMNS),
        )
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


def pages(client: httpx.Client, count: int) -> list[tuple[str, str]]:
    parked = f"bench-{count // 200 * 100 + 7:07d}"  # mid-log, dead-lettered: the fullest page
    older = client.get("/console/signals").text.split('id="older" href="', 1)[1].split('"', 1)[0]
    return [
        ("signals, newest", "/console/signals"),
        ("signals, older page (cursor)", older.replace("&amp;", "&")),
        ("signals, one sender", "/console/signals?sender_id=sender-42"),
        ("signals, one kind", "/console/signals?kind=billing"),
        ("signals, status dead_lettered (1 %)", "/console/signals?status=dead_lettered"),
        ("signals, a time range", "/console/signals?since=2000-01-01T00:00&until=2100-01-01T00:00"),
        ("one signal (with its dead letter)", f"/console/signals/{parked}"),
        ("dead letters", "/console/dead-letters"),
        ("dead letters, one kind", "/console/dead-letters?kind=support"),
        ("rules", "/console/rules"),
        ("health", "/console/health"),
    ]


def server_ms(response: httpx.Response) -> float:
    assert response.status_code == 200, (response.status_code, response.text[:200])
    return float(response.headers["server-timing"].split("dur=", 1)[1])


def measure(base_url: str, count: int, repeat: int) -> list[tuple[str, float, float]]:
    with httpx.Client(base_url=base_url, timeout=30) as client:
        client.post("/console/sign-in", data={"api_key": KEY})
        table = []
        for label, path in pages(client, count):
            server_ms(client.get(path))  # warm: first plan, first template render
            times = sorted(server_ms(client.get(path)) for _ in range(repeat))
            table.append((label, statistics.median(times), times[-1]))
        return table


@contextmanager
def serving(url: str, workdir: Path, port: int) -> Iterator[str]:
    env = {**os.environ, "DATABASE_URL": url, "API_KEY": KEY, "LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [str(BIN / "router-service"), "serve", "--port", str(port)],
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # up to a minute for the server to answer
            try:
                httpx.get(base + "/health/live", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None:
                    raise RuntimeError("the router exited before answering") from None
                time.sleep(0.1)  # polling a port for a process start: no event to wait on
        yield base
    finally:
        process.terminate()
        process.wait(30)


def run_backend(backend: str, args: argparse.Namespace, workdir: Path) -> None:
    name = f"bench_console_{secrets.token_hex(4)}"
    if backend == "sqlite":
        path = workdir / f"{name}.db"
        url = f"sqlite:///{path}"
    else:
        create_database(args.postgres, name)
        url = database_url(args.postgres, name)
    try:
        upgrade(normalise_database_url(url))
        if backend == "sqlite":
            fill_sqlite(str(path), args.signals)
        else:
            asyncio.run(fill_postgres(url, args.signals))
        with serving(url, workdir, args.port) as base:
            table = measure(base, args.signals, args.repeat)
    finally:
        if backend == "postgres":
            drop_database(args.postgres, name)
    print(f"\n{backend}, {args.signals:,} signals, {args.repeat} loads per page (server ms)\n")
    print("| page | median | slowest |\n|---|---:|---:|")
    for label, median, slowest in table:
        print(f"| {label} | {median:.1f} | {slowest:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signals", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="admin URL of the server")
    parser.add_argument("--port", type=int, default=8731)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        for backend in ("sqlite", "postgres") if args.backend == "both" else (args.backend,):
            run_backend(backend, args, Path(tmp))


if __name__ == "__main__":
    main()
