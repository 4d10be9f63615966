"""The agent client against raw loopback agents that answer and frame byte by byte: the
request it writes, the bodies it reads, HTTPS. Keep-alive and hostile agents have modules of
their own (``test_agent_client_keep_alive.py``, ``test_agent_client_hostile.py``)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from router_service.adapters.agents import HttpAgentClient
from router_service.domain.errors import PermanentAgentError, RetryableAgentError
from router_service.domain.routing import AgentSpec
from router_service.service.ports import AgentReply
from tests.support.agent_calls import BODY, HEADERS, call, run
from tests.support.raw_agent import RawAgent, Received, response

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
