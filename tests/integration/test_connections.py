"""Client connections: idle keep-alive connections kept ``KEEP_ALIVE_S`` (75 s by default,
longer than the idle timeout of a load balancer or a client pool) and at most
``MAX_IDLE_CONNECTIONS`` a process, the longest idle closed first; pipelining bounded; bytes that
are not HTTP answered with the JSON error. The protocol, not the database, is under test:
SQLite only."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from router_service.api.protocol import MAX_PIPELINED
from tests.conftest import API_KEY, make_settings
from tests.support.polling import wait_for
from tests.support.raw_http import connect, read_response, until_closed
from tests.support.server import RouterServer

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

REQUEST = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"


def _serve(database_url: str, routing_file: Path, **overrides: float) -> Iterator[RouterServer]:
    with RouterServer(make_settings(database_url, routing_file, **overrides)) as server:
        yield server


@pytest.fixture
def short_keep_alive(database_url: str, routing_file: Path) -> Iterator[RouterServer]:
    yield from _serve(database_url, routing_file, keep_alive_s=0.3)


@pytest.fixture
def two_idle(database_url: str, routing_file: Path) -> Iterator[RouterServer]:
    yield from _serve(database_url, routing_file, max_idle_connections=2)


@pytest.fixture
def two_per_client(database_url: str, routing_file: Path) -> Iterator[RouterServer]:
    yield from _serve(database_url, routing_file, max_connections_per_client=2)


@pytest.fixture
def short_send_timeout(database_url: str, routing_file: Path) -> Iterator[RouterServer]:
    yield from _serve(database_url, routing_file, send_timeout_s=0.3, max_body_bytes=1_000_000)


def _exchange(sock: socket.socket) -> bytes:
    """One GET on a kept connection: its whole answer."""
    sock.sendall(REQUEST)
    return read_response(sock)


def _closed_by_router(sock: socket.socket) -> bool:
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True


def test_an_idle_connection_is_kept_75_s_by_default(router: RouterServer) -> None:
    with connect(router) as sock:
        assert _exchange(sock).startswith(b"HTTP/1.1 200 ")
        kept = [conn.timeout_keep_alive for conn in router.server_state.connections]
    assert kept
    assert set(kept) == {75.0}  # uvicorn's own default is 5 s


def test_an_idle_connection_is_closed_after_keep_alive_s(short_keep_alive: RouterServer) -> None:
    with connect(short_keep_alive) as sock:
        assert _exchange(sock).startswith(b"HTTP/1.1 200 ")
        assert _exchange(sock).startswith(b"HTTP/1.1 200 ")  # kept between requests
        idle_from = time.perf_counter()
        assert _closed_by_router(sock)  # the read waits until the router closes it
        idle_s = time.perf_counter() - idle_from
    assert 0.25 <= idle_s < 3.0  # KEEP_ALIVE_S, not uvicorn's 5 s nor our socket's 10-s timeout


def test_past_max_idle_connections_the_longest_idle_is_closed(two_idle: RouterServer) -> None:
    with connect(two_idle) as a, connect(two_idle) as b:
        assert _exchange(a).startswith(b"HTTP/1.1 200 ")
        assert _exchange(b).startswith(b"HTTP/1.1 200 ")
        assert _exchange(a).startswith(b"HTTP/1.1 200 ")  # now b is the longest idle
        with connect(two_idle) as c:
            assert _exchange(c).startswith(b"HTTP/1.1 200 ")  # a third idle: over the limit
            # Within 10 s (the socket's timeout), far below KEEP_ALIVE_S: only the limit closes.
            assert _closed_by_router(b)
            assert _exchange(a).startswith(b"HTTP/1.1 200 ")
            assert _exchange(c).startswith(b"HTTP/1.1 200 ")


def test_past_max_idle_connections_the_client_holding_the_most_loses_one(
    two_idle: RouterServer,
) -> None:
    """A client idle a second between its requests keeps its connection while another keeps
    opening them: the other's longest idle goes."""
    with connect(two_idle, source="127.0.0.2") as quiet:
        assert _exchange(quiet).startswith(b"HTTP/1.1 200 ")
        with (
            connect(two_idle, source="127.0.0.3") as first,
            connect(two_idle, source="127.0.0.3") as second,
        ):
            assert _exchange(first).startswith(b"HTTP/1.1 200 ")
            assert _exchange(second).startswith(b"HTTP/1.1 200 ")  # over the limit
            assert _closed_by_router(first)
            assert _exchange(quiet).startswith(b"HTTP/1.1 200 ")
            assert _exchange(second).startswith(b"HTTP/1.1 200 ")


def test_a_client_past_max_connections_per_client_gets_503_and_others_are_served(
    two_per_client: RouterServer,
) -> None:
    """A client opening connections and sending nothing held every file of the process."""
    with (
        connect(two_per_client, source="127.0.0.2") as a,
        connect(two_per_client, source="127.0.0.2") as b,
    ):
        assert _exchange(a).startswith(b"HTTP/1.1 200 ")  # both admitted before the third
        with connect(two_per_client, source="127.0.0.2") as third:
            refused = until_closed(third)  # written at once, before any request
        assert refused.startswith(b"HTTP/1.1 503 ")
        body = json.loads(refused.partition(b"\r\n\r\n")[2])
        assert body["error"]["code"] == "too_many_connections"
        with connect(two_per_client, source="127.0.0.3") as other:
            assert _exchange(other).startswith(b"HTTP/1.1 200 ")
        assert _exchange(b).startswith(b"HTTP/1.1 200 ")
    # Their connections closed, the client may open new ones.

    def admitted() -> bytes | None:
        with connect(two_per_client, source="127.0.0.2") as again:
            try:
                answer = _exchange(again)
            except OSError:  # refused while the router had yet to see the others close
                return None
        return answer if answer.startswith(b"HTTP/1.1 200 ") else None

    wait_for(admitted, what="a connection admitted again")


def test_a_client_pipelining_without_limit_is_answered_up_to_the_limit_then_closed(
    router: RouterServer,
) -> None:
    """1,000 GETs in one write: uvicorn alone queued all of them (about 1.5 KB of state each, so
    memory grew with what a client sent); the router answers the queued ones and closes."""
    sent = 1000
    with connect(router) as sock:
        sock.sendall(REQUEST * sent)
        data = until_closed(sock)
    answers = data.count(b"HTTP/1.1 200 ")
    assert MAX_PIPELINED + 1 <= answers < sent
    last_head = data.rsplit(b"HTTP/1.1 200 ", 1)[1].split(b"\r\n\r\n", 1)[0]
    assert b"connection: close" in last_head.lower()


def test_pipelining_within_the_limit_is_answered_on_a_connection_kept_open(
    router: RouterServer,
) -> None:
    with connect(router) as sock:
        sock.sendall(b"".join(REQUEST.replace(b"Host: x", b"Host: h%d" % i) for i in range(8)))
        data = b""
        while data.count(b"HTTP/1.1 200 ") < 8 or not data.endswith(b"}"):
            chunk = sock.recv(1 << 20)
            assert chunk, data
            data += chunk
        assert b"connection: close" not in data.lower()
        assert _exchange(sock).startswith(b"HTTP/1.1 200 ")  # still open


def test_bytes_that_are_not_http_get_the_json_error_and_the_connection_closes(
    router: RouterServer,
) -> None:
    for garbage in (
        b"GARBAGE\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"POST /route HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
    ):
        with connect(router) as sock:
            sock.sendall(garbage)
            data = until_closed(sock)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), (garbage, data)
        assert b"content-type: application/json" in head.lower()
        assert json.loads(body)["error"]["code"] == "invalid_http"


def test_requests_before_bytes_that_are_not_http_are_answered_first(router: RouterServer) -> None:
    with connect(router) as sock:
        sock.sendall(REQUEST + REQUEST + b"GARBAGE\r\n\r\n")
        data = until_closed(sock)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
    assert statuses == [b"200", b"200", b"400"], data
    assert data.endswith(b'"message":"the request is not valid HTTP/1.1"}}')


def test_a_client_that_does_not_read_its_answers_is_cut_off(
    short_send_timeout: RouterServer,
) -> None:
    """Its answers stay in the router's buffer and its connection open, with the request
    that waits to write: it was kept as long as the client liked (no timeout applied to a
    connection waiting to write). Past ``SEND_TIMEOUT_S`` it is aborted."""
    router = short_send_timeout
    with httpx.Client(base_url=router.base_url, headers={"X-API-Key": API_KEY}) as client:
        for n in range(4):  # answers of megabytes: more than the kernel's buffers take
            big = {"sender_id": "u", "payload": {"route": "one", "text": f"{n}" * 800_000}}
            assert client.post("/route", json=big).status_code == 200
    listing = f"GET /logs?limit=4 HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\n\r\n"
    port = int(router.base_url.rsplit(":", 1)[1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the router's sends stall soon
    sock.settimeout(10)
    try:
        sock.connect(("127.0.0.1", port))
        sock.sendall(listing.encode() * MAX_PIPELINED)
        wait_for(
            lambda: not short_send_timeout.server_state.connections,
            timeout_s=10,
            what="the router to give up the connection of a client that does not read",
        )
        data = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 ")
        assert data.count(b"HTTP/1.1 200 ") < MAX_PIPELINED  # not all were written
    finally:
        sock.close()
