"""The load generator against a stand-in ``POST /route`` served in-process on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web
from click.testing import CliRunner

from loadgen import LoadOptions, LoadReport, run_load, signal_mix
from loadgen.command import load_command

API_KEY = "test-key"


def expected_answer(payload: dict[str, Any]) -> tuple[str, int]:
    """How the stand-in router answers a payload: (router status, HTTP status)."""
    if "severity" in payload:
        return "partial", 200
    if "note" in payload:
        return "dead_lettered", 202
    return "delivered", 200


@dataclass
class StubRouter:
    """Answers like the router: first sight of a log_id is processed, later ones are duplicates."""

    delay_s: float = 0.0
    outcomes: dict[str, tuple[str, int]] = field(default_factory=dict)
    calls: int = 0

    async def route(self, request: web.Request) -> web.Response:
        self.calls += 1
        if request.headers.get("X-API-Key") != API_KEY:
            return web.json_response({"error": "unauthorized"}, status=401)
        body = orjson.loads(await request.read())
        log_id = body["log_id"]
        duplicate = log_id in self.outcomes
        status, http_status = self.outcomes.setdefault(log_id, expected_answer(body["payload"]))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        answer = {
            "log_id": log_id,
            "trace_id": "0" * 32,
            "kind": "stub",
            "status": status,
            "duplicate": duplicate,
            "latency_ms": self.delay_s * 1000,
        }
        return web.json_response(answer, status=http_status)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/route", self.route)
        return app


@contextlib.asynccontextmanager
async def serving(stub: StubRouter) -> AsyncIterator[str]:
    runner = web.AppRunner(stub.app(), handler_cancellation=True, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


def load(stub: StubRouter, **options: Any) -> LoadReport:
    async def scenario() -> LoadReport:
        async with serving(stub) as url:
            return await run_load(LoadOptions(url=url, api_key=API_KEY, **options))

    return asyncio.run(scenario())


def expected_counts(
    n: int, seed: int, duplicates: float, run_id: str
) -> tuple[Counter[str], Counter[int]]:
    plan = signal_mix(n, seed=seed, duplicates=duplicates, run_id=run_id)
    answers = [expected_answer(p.body["payload"]) for p in plan]
    return Counter(s for s, _ in answers), Counter(code for _, code in answers)


def test_closed_loop_sends_every_request_and_counts_answers() -> None:
    stub = StubRouter()

    report = load(stub, requests=80, concurrency=4, duplicates=0.1, seed=5, run_id="closed")

    statuses, codes = expected_counts(80, 5, 0.1, "closed")
    assert report.mode == "closed"
    assert (report.requests, report.answered, stub.calls) == (80, 80, 80)
    assert report.duplicates_sent == 8
    assert report.duplicates_answered == 8
    assert report.router_statuses == dict(statuses)
    assert report.status_codes == dict(codes)
    assert report.errors == {}
    assert report.latency is not None
    assert report.latency.count == 80
    assert report.throughput_rps > 0
    assert report.seed == 5


def test_open_loop_sends_on_schedule_and_counts_answers() -> None:
    stub = StubRouter()

    report = load(stub, requests=40, rate=400.0, duplicates=0.05, seed=8, run_id="open")

    statuses, codes = expected_counts(40, 8, 0.05, "open")
    assert report.mode == "open"
    assert report.target_rate == 400.0
    assert (report.requests, report.answered, stub.calls) == (40, 40, 40)
    assert report.duplicates_sent == report.duplicates_answered == 2
    assert report.router_statuses == dict(statuses)
    assert report.status_codes == dict(codes)
    assert report.errors == {}
    assert report.duration_s >= 39 / 400


def test_open_loop_latency_includes_queueing_behind_a_slow_server() -> None:
    # One connection, 50 ms per answer, a request due every 10 ms: the tenth request is due at
    # 90 ms but can only finish at ~500 ms. Measured from its intended send time that is ~400 ms;
    # a closed-loop client would have reported ~50 ms (coordinated omission).
    stub = StubRouter(delay_s=0.05)

    report = load(stub, requests=10, rate=100.0, concurrency=1, duplicates=0.0, seed=1)

    assert report.answered == 10
    assert report.latency is not None
    assert report.latency.max_ms >= 300


def test_open_loop_drops_and_counts_requests_beyond_the_outstanding_cap() -> None:
    stub = StubRouter(delay_s=0.3)

    report = load(stub, requests=20, rate=100.0, max_outstanding=3, duplicates=0.0, seed=2)

    assert report.dropped >= 10
    assert report.answered + report.dropped == 20
    assert stub.calls == report.answered
    assert report.latency is not None
    assert report.latency.count == report.answered
    assert report.latency.p50_ms >= 300


def test_timeouts_are_errors_not_latencies() -> None:
    stub = StubRouter(delay_s=5.0)

    report = load(stub, requests=3, concurrency=3, timeout_s=0.1, seed=3)

    assert report.errors == {"timeout": 3}
    assert report.answered == 0
    assert report.latency is None


def test_unreachable_router_is_connection_errors_not_latencies() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and is closed now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    report = asyncio.run(run_load(LoadOptions(url=f"http://127.0.0.1:{port}", requests=5, seed=1)))

    assert sum(report.errors.values()) == 5
    assert "timeout" not in report.errors
    assert report.latency is None
    assert report.status_codes == {}


def test_wrong_api_key_shows_up_as_status_codes() -> None:
    stub = StubRouter()

    async def scenario() -> LoadReport:
        async with serving(stub) as url:
            return await run_load(LoadOptions(url=url, api_key="wrong", requests=6, seed=4))

    report = asyncio.run(scenario())

    assert report.status_codes == {401: 6}
    assert report.router_statuses == {}
    assert report.errors == {}


@contextlib.contextmanager
def serving_in_thread(stub: StubRouter) -> Iterator[str]:
    """The stub on its own loop, for the CLI which runs its own ``asyncio.run``."""
    ready, stop = threading.Event(), threading.Event()
    urls: list[str] = []

    async def main() -> None:
        async with serving(stub) as url:
            urls.append(url)
            ready.set()
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    try:
        assert ready.wait(10)
        yield urls[0]
    finally:
        stop.set()
        thread.join(10)


def test_cli_prints_one_json_report() -> None:
    stub = StubRouter()
    with serving_in_thread(stub) as url:
        args = ["--url", url, "-n", "30", "-c", "3", "--seed", "6", "--json", "--no-progress"]
        result = CliRunner().invoke(load_command, args, env={"API_KEY": API_KEY})

    assert result.exit_code == 0, result.output
    report = orjson.loads(result.stdout)
    assert report["requests"] == report["answered"] == 30
    assert report["seed"] == 6
    assert report["duplicates_sent"] == 2
    assert report["errors"] == {}


def test_cli_prints_a_table_and_fails_when_nothing_answers() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    result = CliRunner().invoke(load_command, ["--url", f"http://127.0.0.1:{port}", "-n", "3"])

    assert result.exit_code == 1
    assert "throughput" in result.stdout
    assert "errors" in result.stdout


def test_a_kept_connection_closed_under_a_request_is_counted_as_its_own_kind() -> None:
    """The keep-alive race, made certain: the server answers a connection's first request and
    closes it, unanswered, when the next one arrives on it."""
    answer = orjson.dumps({"status": "delivered", "duplicate": False})
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"

    async def one_answer_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        for answered in (False, True):
            headers = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in headers.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await reader.readexactly(length)
            if answered:
                break
            writer.write(head % len(answer) + answer)
            await writer.drain()
        writer.close()

    async def scenario() -> LoadReport:
        server = await asyncio.start_server(one_answer_per_connection, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            options = LoadOptions(url=f"http://127.0.0.1:{port}", requests=2, concurrency=1)
            return await run_load(options)

    report = asyncio.run(scenario())

    assert report.answered == 1
    assert report.errors == {"reused_connection_closed": 1}
