"""The agent client against raw loopback agents that answer, frame and misbehave byte by byte."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from router_service.adapters.agents import HttpAgentClient
from router_service.domain.errors import PermanentAgentError, RetryableAgentError
from router_service.domain.outcome import AgentResult
from router_service.domain.retry import RetryPolicy
from router_service.domain.routing import AgentSpec
from router_service.observability.events import Telemetry
from router_service.observability.metrics import Metrics
from router_service.observability.tracing import TraceContext
from router_service.service.dispatch import Dispatcher, Envelope
from router_service.service.ports import AgentReply
from tests.support.raw_agent import RawAgent, Received, response

T = TypeVar("T")
BODY = b'{"log_id":"abc","payload":{"n":1}}'
ENVELOPE = Envelope(
    log_id="abc",
    sender_id="s",
    kind="one",
    payload={"n": 1},
    payload_json='{"n":1}',
    metadata={},
    timestamp=datetime(2026, 1, 1, tzinfo=UTC),
)
HEADERS = {
    "Content-Type": "application/json",
    "Idempotency-Key": "abc",
    "traceparent": "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01",
}
CAP = 4096


def run(scenario: Callable[[HttpAgentClient], Coroutine[Any, Any, T]], **options: Any) -> T:
    """``scenario(client)`` on a fresh loop, with a client closed afterwards."""

    async def main() -> T:
        client = HttpAgentClient(
            max_connections=options.pop("max_connections", 8),
            max_response_bytes=CAP,
            **options,
        )
        try:
            return await scenario(client)
        finally:
            await client.close()

    return asyncio.run(main())


def call(
    client: HttpAgentClient, url: str, timeout_s: float = 2.0, **headers: str
) -> Awaitable[AgentReply]:
    return client.call(AgentSpec("a", url), BODY, headers or HEADERS, timeout_s)


async def eventually(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    give_up = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < give_up, "condition not met in time"
        await asyncio.sleep(0.01)


# --------------------------------------------------------------------------- requests


def test_request_is_a_post_with_host_length_and_the_headers_verbatim() -> None:
    with RawAgent() as agent:
        reply = run(lambda c: call(c, agent.url("/hooks/a?tenant=t1")))
    assert reply == AgentReply(200, {"ok": True})
    [seen] = agent.requests
    assert seen.request_line == "POST /hooks/a?tenant=t1 HTTP/1.1"
    assert seen.headers["host"] == f"127.0.0.1:{agent.port}"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["content-length"] == str(len(BODY))
    assert seen.headers["idempotency-key"] == "abc"
    assert seen.headers["traceparent"] == HEADERS["traceparent"]
    assert b"\r\ntraceparent: " in seen.raw_head  # the caller's spelling, as given
    assert "user-agent" not in seen.headers
    assert seen.body == BODY


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Evil": "a\r\nInjected: 1"},
        {"X-Evil": "a\nInjected: 1"},
        {"X-Evil": "a\x00b"},
        {"X-Evil\r\nInjected": "1"},
        {"Bad Name": "1"},
    ],
    ids=["crlf", "lf", "nul", "crlf-in-name", "space-in-name"],
)
def test_header_that_could_split_the_request_is_refused_before_sending(
    headers: dict[str, str],
) -> None:
    with RawAgent() as agent:

        async def scenario(client: HttpAgentClient) -> None:
            with pytest.raises(PermanentAgentError, match="request refused by the client"):
                await client.call(AgentSpec("a", agent.url()), BODY, headers, 2.0)

        run(scenario)
    assert agent.accepts == 0


def test_ipv6_literal_agent_url() -> None:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with RawAgent(host="::1") as agent:
        reply = run(lambda c: call(c, agent.url()))
    assert reply.status_code == 200
    assert agent.requests[0].headers["host"] == f"[::1]:{agent.port}"


# --------------------------------------------------------------------------- keep-alive


def test_sequential_calls_reuse_one_keep_alive_connection() -> None:
    with RawAgent() as agent:

        async def scenario(client: HttpAgentClient) -> list[AgentReply]:
            return [await call(client, agent.url()) for _ in range(5)]

        replies = run(scenario)
    assert [r.status_code for r in replies] == [200] * 5
    assert agent.accepts == 1
    assert [r.connection for r in agent.requests] == [0] * 5


def test_connection_close_answer_is_not_reused() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(response(headers={"Connection": "close"}))
        await writer.drain()
        return True  # the server would go on; the client must not

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> None:
            for _ in range(3):
                assert (await call(client, agent.url())).body == {"ok": True}

        run(scenario)
    assert agent.accepts == 3
    assert [r.connection for r in agent.requests] == [0, 1, 2]


def test_idle_connection_closed_by_the_agent_is_an_immediate_retryable_error() -> None:
    with RawAgent() as agent:

        async def scenario(client: HttpAgentClient) -> AgentReply:
            await call(client, agent.url())
            # The agent closes its idle keep-alive connection while this loop is held still:
            # the client sends its next request on it before it can see the close.
            agent.drop_connections()
            # Never sent again behind the caller's back: the caller's retry is a counted attempt.
            with pytest.raises(RetryableAgentError, match="reused keep-alive") as caught:
                await call(client, agent.url())
            assert caught.value.retry_after_s == 0.0  # the keep-alive race needs no backoff
            return await call(client, agent.url())

        reply = run(scenario)
    assert reply.status_code == 200
    assert agent.accepts == 2
    assert [r.connection for r in agent.requests] == [0, 1]


def test_an_agent_that_reads_then_closes_sees_as_many_requests_as_counted_attempts() -> None:
    """The agent accepts the second signal's request and closes without answering: the re-send
    on a fresh connection is attempt 2 in the result, the metrics and the logs."""

    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        if len(agent.requests) == 2:
            return False  # read it, then close without a byte of answer
        writer.write(response())
        await writer.drain()
        return True

    metrics = Metrics()
    attempts: list[dict[str, Any]] = []

    class Log:
        def info(self, event: str, **fields: Any) -> None:
            if event == "agent.attempt":
                attempts.append(fields)

    async def scenario(client: HttpAgentClient) -> list[AgentResult]:
        dispatcher = Dispatcher(
            {"http": client},
            Telemetry(metrics, logger=Log()),
            policy=RetryPolicy(max_attempts=3, base_s=0.001, cap_s=0.001),
            agent_timeout_s=2.0,
            fanout_concurrency=4,
            global_concurrency=8,
        )
        spec = AgentSpec("a", agent.url())
        trace = TraceContext("0" * 31 + "1", "0" * 15 + "1")
        envelope = ENVELOPE
        return [
            await dispatcher.call_one(spec, envelope, trace, time.perf_counter() + 5)
            for _ in range(2)
        ]

    with RawAgent(answer) as agent:
        first, second = run(scenario)
    assert (first.ok, first.attempts) == (True, 1)
    assert (second.ok, second.attempts) == (True, 2)
    assert len(agent.requests) == 3  # one for the first signal, two for the second
    assert [r.connection for r in agent.requests] == [0, 0, 1]
    assert _sample(metrics, "retry_attempts_total") == 1
    assert _sample(metrics, "routing_errors_total", agent="a") == 1
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [
        (1, "ok"),
        (1, "retryable"),
        (2, "ok"),
    ]


def test_the_re_send_after_a_stale_connection_is_bounded_like_any_retry() -> None:
    """An agent that reads every request on a reused connection and closes: attempts stop at
    RETRY_MAX_ATTEMPTS, each one counted."""

    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        if len(agent.requests) == 1:
            writer.write(response())
            await writer.drain()
            return True
        return False

    async def scenario(client: HttpAgentClient) -> AgentResult:
        dispatcher = Dispatcher(
            {"http": client},
            Telemetry(Metrics()),
            policy=RetryPolicy(max_attempts=2, base_s=0.001, cap_s=0.001),
            agent_timeout_s=2.0,
            fanout_concurrency=4,
            global_concurrency=8,
        )
        spec = AgentSpec("a", agent.url())
        trace = TraceContext("0" * 31 + "1", "0" * 15 + "1")
        envelope = ENVELOPE
        await dispatcher.call_one(spec, envelope, trace, time.perf_counter() + 5)
        return await dispatcher.call_one(spec, envelope, trace, time.perf_counter() + 5)

    with RawAgent(answer) as agent:
        result = run(scenario)
    assert (result.ok, result.attempts) == (False, 2)
    assert len(agent.requests) == 3


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_reused_connection_failing_after_an_answer_byte_is_not_retried() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        if len(agent.requests) == 1:
            writer.write(response())
            await writer.drain()
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Len")
        await writer.drain()
        return False

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> None:
            await call(client, agent.url())
            with pytest.raises(RetryableAgentError, match="connection error: closed before"):
                await call(client, agent.url())

        run(scenario)
    assert len(agent.requests) == 2
    assert agent.accepts == 1


def test_new_connection_closed_without_an_answer_is_not_retried() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        return False

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> None:
            with pytest.raises(RetryableAgentError, match="connection error: closed without"):
                await call(client, agent.url())

        run(scenario)
    assert len(agent.requests) == 1


def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    with RawAgent() as agent:

        async def scenario(client: HttpAgentClient) -> None:
            await call(client, agent.url())
            assert agent.open == 1
            await eventually(lambda: agent.open == 0)

        run(scenario, idle_timeout_s=0.1)


def test_close_closes_the_idle_connections() -> None:
    with RawAgent() as agent:

        async def scenario(client: HttpAgentClient) -> None:
            await call(client, agent.url())
            await client.close()
            await eventually(lambda: agent.open == 0)

        run(scenario)


def test_max_connections_bounds_concurrent_connections() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)
        writer.write(response())
        await writer.drain()
        return True

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> list[AgentReply]:
            return await asyncio.gather(*(call(client, agent.url()) for _ in range(12)))

        replies = run(scenario, max_connections=3)
    assert [r.status_code for r in replies] == [200] * 12
    assert agent.peak == 3
    assert agent.accepts == 3


def test_waiting_for_a_connection_counts_against_the_deadline() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.5)
        writer.write(response())
        await writer.drain()
        return True

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> None:
            slow = asyncio.create_task(call(client, agent.url(), timeout_s=2.0))
            await eventually(lambda: len(agent.requests) == 1)
            with pytest.raises(RetryableAgentError, match="timed out after 100 ms"):
                await call(client, agent.url(), timeout_s=0.1)
            assert (await slow).status_code == 200

        run(scenario, max_connections=1)
    assert agent.peak == 1


# --------------------------------------------------------------------------- bodies


def test_chunked_answer_is_read_and_the_connection_reused() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n")
        writer.write(b"Transfer-Encoding: chunked\r\n\r\n")
        for part in (b'{"chunks":', b"[1,2,", b"3]}"):
            writer.write(b"%x\r\n%s\r\n" % (len(part), part))
            await writer.drain()
            await asyncio.sleep(0.01)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> list[AgentReply]:
            return [await call(client, agent.url()) for _ in range(2)]

        replies = run(scenario)
    assert [r.body for r in replies] == [{"chunks": [1, 2, 3]}] * 2
    assert agent.accepts == 1


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_body_delimited_by_the_end_of_the_connection_is_read_and_not_reused(
    version: str,
) -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(response(body=b'{"until":', version=version, length=False))
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b'"close"}')
        await writer.drain()
        return False

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> list[AgentReply]:
            return [await call(client, agent.url()) for _ in range(2)]

        replies = run(scenario)
    assert [r.body for r in replies] == [{"until": "close"}] * 2
    assert agent.accepts == 2


def test_informational_answer_is_skipped() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        await writer.drain()
        writer.write(response(202, b'{"queued":true}'))
        await writer.drain()
        return True

    with RawAgent(answer) as agent:
        reply = run(lambda c: call(c, agent.url()))
    assert reply == AgentReply(202, {"queued": True})


def test_redirect_is_not_followed() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(response(302, b"", headers={"Location": "http://127.0.0.1:1/elsewhere"}))
        await writer.drain()
        return True

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> PermanentAgentError:
            with pytest.raises(PermanentAgentError) as caught:
                await call(client, agent.url())
            return caught.value

        error = run(scenario)
    assert error.status_code == 302
    assert len(agent.requests) == 1


def test_retryable_status_reads_retry_after_and_content_type_in_any_case() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 503 Busy\r\nRETRY-AFTER: 7\r\ncontent-TYPE: application/json\r\n")
        writer.write(b'Content-Length: 15\r\n\r\n{"busy":"yes"}\n')
        await writer.drain()
        return True

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> RetryableAgentError:
            with pytest.raises(RetryableAgentError) as caught:
                await call(client, agent.url())
            return caught.value

        error = run(scenario)
    assert (error.status_code, error.retry_after_s, error.response) == (503, 7.0, {"busy": "yes"})


def test_invalid_response_is_a_retryable_connection_error() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"SMTP ready\r\n\r\n")
        await writer.drain()
        return True

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> None:
            with pytest.raises(RetryableAgentError, match="connection error: invalid response"):
                await call(client, agent.url())

        run(scenario)


# --------------------------------------------------------------------------- hostile agents


def test_declared_length_over_the_cap_is_refused_without_reading_the_body() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {CAP + 1}\r\n\r\n".encode())
        await writer.drain()
        await asyncio.sleep(10)  # never sends the body: the client must not wait for it
        return True

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> float:
            started = time.perf_counter()
            with pytest.raises(PermanentAgentError, match=f"larger than {CAP} bytes") as caught:
                await call(client, agent.url(), timeout_s=5.0)
            assert caught.value.status_code == 200
            return time.perf_counter() - started

        elapsed = run(scenario)
    assert elapsed < 1.0


def test_chunked_body_over_the_cap_stops_the_read_and_the_connection() -> None:
    sent: list[int] = []

    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        if received.connection > 0:
            writer.write(response())
            await writer.drain()
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        part = b"x" * 1024
        try:
            for _ in range(1024):  # 1 MiB offered; the cap is 4 KiB
                writer.write(b"400\r\n" + part + b"\r\n")
                await writer.drain()
                sent.append(len(part))
                await asyncio.sleep(0.002)
        except ConnectionError:
            return False
        return True

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> None:
            with pytest.raises(PermanentAgentError, match=f"larger than {CAP} bytes"):
                await call(client, agent.url(), timeout_s=5.0)
            # Never reused: the next call gets a new connection.
            assert (await call(client, agent.url())).status_code == 200

        run(scenario)
    assert sum(sent) < 256 * 1024
    assert agent.accepts == 2


def test_drip_feeding_agent_hits_the_one_deadline_and_its_connection_is_dropped() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        if received.connection > 0:
            writer.write(response())
            await writer.drain()
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(100):
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.05)  # every read is quick; the whole answer is not
        return True

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> float:
            started = time.perf_counter()
            with pytest.raises(RetryableAgentError, match="timed out after 300 ms"):
                await call(client, agent.url(), timeout_s=0.3)
            elapsed = time.perf_counter() - started
            assert (await call(client, agent.url())).status_code == 200
            return elapsed

        elapsed = run(scenario)
    assert 0.3 <= elapsed < 0.6
    assert agent.accepts == 2


# --------------------------------------------------------------------------- https


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=x"]
    names = ["-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(key), "-out", str(cert)]
    subprocess.run([openssl, *request, *names, *files], check=True, capture_output=True)
    return cert, key


def test_https_agent_with_a_trusted_certificate(certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    with RawAgent(tls=server_side) as agent:

        async def scenario(client: HttpAgentClient) -> list[AgentReply]:
            return [await call(client, agent.url()) for _ in range(3)]

        replies = run(scenario, ssl_context=ssl.create_default_context(cafile=str(cert)))
    assert [r.status_code for r in replies] == [200] * 3
    assert agent.accepts == 1


def test_https_agent_with_an_untrusted_certificate_is_a_connection_error(
    certificate: tuple[Path, Path],
) -> None:
    cert, key = certificate
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)
    with RawAgent(tls=server_side) as agent:

        async def scenario(client: HttpAgentClient) -> None:
            with pytest.raises(RetryableAgentError, match=r"connection error: .*certificate"):
                await call(client, agent.url())

        run(scenario)
    assert agent.requests == []
