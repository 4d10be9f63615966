"""The router's HTTP protocol writes a response's head with its body (``OneWrite``): a client
waiting for ``100 Continue`` still gets it at once, and a HEAD answer still arrives."""

from __future__ import annotations

from tests.conftest import API_KEY
from tests.support.raw_http import connect, read_response
from tests.support.server import RouterServer


def test_expect_100_continue_is_answered_before_the_body_is_sent(
    router: RouterServer,
) -> None:
    body = b'{"sender_id": "continue", "payload": {"route": "one"}}'
    with connect(router) as sock:
        sock.sendall(
            b"POST /route HTTP/1.1\r\nHost: x\r\nX-API-Key: " + API_KEY.encode() + b"\r\n"
            b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        interim = sock.recv(65536)  # a held 100 would time this read out
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        answer = read_response(sock, interim.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n"))
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        assert b'"status":"delivered"' in answer


def test_a_head_request_gets_its_headers(router: RouterServer) -> None:
    with connect(router) as sock:
        sock.sendall(b"HEAD /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, data  # a head held for a body that never comes: nothing arrives
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 "), data  # served as GET, without its body
    head, _, rest = data.partition(b"\r\n\r\n")
    assert b"\r\ncontent-length: " in head.lower(), head  # GET's length, no body after it
    assert rest == b"", rest
