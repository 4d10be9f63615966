"""``serve --workers 2`` when a worker dies: its replacement, and what /metrics says after."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

from tests.support.db import migrated_database, sqlite_url
from tests.support.polling import wait_for
from tests.support.ports import free_ports
from tests.support.processes import BIN, migrate, start, stop
from tests.support.proxy import FaultyProxy
from tests.support.routing_files import shipped_routing_on

HEADERS = {"X-API-Key": "k"}


def total(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def workers(supervisor: int) -> set[int]:
    """The supervisor's worker processes (multiprocessing's spawned children)."""
    children: set[int] = set()
    for task in Path(f"/proc/{supervisor}/task").iterdir():
        children |= {int(pid) for pid in (task / "children").read_text().split()}
    found = set()
    for pid in children:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if b"spawn_main" in command and b"resource_tracker" not in command:
            found.add(pid)
    return found


def ready(supervisor: int, output: Path) -> set[int]:
    """The workers that have said ``startup.ready`` (a worker not yet started is not serving)."""
    said = {
        int(pid) for pid in re.findall(r'"pid":(\d+),[^\n]*"startup.ready"', output.read_text())
    }
    return workers(supervisor) & said


@contextmanager
def serve_two_workers(
    database_url: str, tmp_path: Path, **extra: str
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    agents_port, router_port = free_ports(2)
    env = {
        "API_KEY": "k",
        "DATABASE_URL": database_url,
        "ROUTING_CONFIG": str(shipped_routing_on(agents_port, tmp_path)),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        **extra,
    }
    migrate(env)
    agents = start(
        [str(BIN / "router-service"), "demo-agents", "--port", str(agents_port)], env, agents_port
    )
    output = tmp_path / "serve.err"
    with output.open("wb") as sink:
        router = start(
            [str(BIN / "router-service"), "serve", "--port", str(router_port), "--workers", "2"],
            env,
            router_port,
            stderr=sink,
            stdout=sink,
        )
    try:
        wait_for(lambda: len(ready(router.pid, output)) == 2, what="two workers serving")
        yield router, f"http://127.0.0.1:{router_port}", output
    finally:
        stop(router)
        stop(agents)


@contextmanager
def proxied_database(proxy: FaultyProxy) -> Iterator[str]:
    """A new migrated Postgres database, reached through ``proxy``."""
    with migrated_database("postgres") as direct:
        url = make_url(direct).set(host="127.0.0.1", port=proxy.port)
        yield url.render_as_string(hide_password=False)


def metrics(base_url: str) -> str:
    return httpx.get(f"{base_url}/metrics", headers=HEADERS, timeout=10).text


def test_a_killed_workers_live_gauges_leave_the_metrics(tmp_path: Path) -> None:
    """Nothing marked a dead worker dead: its pool sizes and requests in flight stayed in the
    sums for ever (db_pool_size 40 -> 60 with two workers alive)."""
    with serve_two_workers(sqlite_url(tmp_path / "r.db"), tmp_path) as (router, base_url, output):
        both = set(workers(router.pid))
        # Each worker has written its gauges once it has served a request.
        wait_for(lambda: len(list((tmp_path / "metrics").glob("gauge_live*.db"))) >= 2)
        pool = total(metrics(base_url), "db_pool_size")
        assert pool > 0
        victim = min(both)
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: len(ready(router.pid, output)) == 2 and victim not in workers(router.pid),
            what="the replacement worker serving",
        )
        # The replacement's gauges (written before it said ready) replace the dead worker's.
        assert total(metrics(base_url), "db_pool_size") == pool
        dead = [p for p in (tmp_path / "metrics").glob("gauge_live*.db") if str(victim) in p.stem]
        assert dead == []


def test_a_replacement_that_cannot_start_leaves_the_other_worker_serving(
    proxy: FaultyProxy, tmp_path: Path
) -> None:
    """A worker killed while the database was away: its replacement failed to start, and
    uvicorn stopped the healthy worker too and exited 0. Now the other worker serves, the
    replacement is tried again, and comes up when the database is back."""
    with (
        proxied_database(proxy) as url,
        serve_two_workers(url, tmp_path, STARTUP_DB_WAIT_S="1") as (router, base_url, output),
    ):
        victim = min(workers(router.pid))
        proxy.cut()
        os.kill(victim, signal.SIGKILL)
        wait_for(
            lambda: "failed to start; the other workers serve" in output.read_text(),
            timeout_s=60,
            what="the replacement's failed start",
            detail=output.read_text,
        )
        assert router.poll() is None  # still supervising
        assert httpx.get(f"{base_url}/health/live", timeout=10).status_code == 200
        proxy.restore()
        wait_for(lambda: len(ready(router.pid, output)) == 2, timeout_s=60, what="a replacement")
        body = {"sender_id": "w", "payload": {"message": "policy question"}}
        answers = [
            httpx.post(
                f"{base_url}/route",
                json=body | {"payload": {"message": f"policy question {i}"}},
                headers=HEADERS | {"Connection": "close"},  # spread over both workers
                timeout=30,
            ).status_code
            for i in range(10)
        ]
        assert answers == [200] * 10


def test_serve_exits_3_when_no_worker_can_start(proxy: FaultyProxy, tmp_path: Path) -> None:
    """Every worker failing its start is a failed start (uvicorn's 3), not a clean stop."""
    with (
        proxied_database(proxy) as url,
        serve_two_workers(url, tmp_path, STARTUP_DB_WAIT_S="1") as (router, _, output),
    ):
        proxy.cut()
        for pid in workers(router.pid):
            os.kill(pid, signal.SIGKILL)
        assert router.wait(timeout=60) == 3, output.read_text()
        assert "no worker serves: stopping" in output.read_text()
