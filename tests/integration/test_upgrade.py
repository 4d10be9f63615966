"""A request that offers an upgrade (``Upgrade: h2c``, as curl's ``--http2`` and Java's HTTP
clients send on plain HTTP, or ``Upgrade: websocket``) is served as the HTTP/1.1 request it also
is, body included; the router speaks no other protocol. llhttp ends such a message at its
headers: the request was served without its body, and the body was read as the next request
on the connection (a body of request bytes ran as a request of its own). The protocol, not the
database, is under test: SQLite only."""

from __future__ import annotations

import json

import pytest

from tests.conftest import API_KEY
from tests.support.polling import wait_for
from tests.support.raw_http import connect, read_response
from tests.support.server import RouterServer

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

SIGNAL = json.dumps({"sender_id": "u", "payload": {"route": "one"}}).encode()
OFFER = (
    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
)


def _post(body_framing: bytes, extra: bytes = OFFER) -> bytes:
    return (
        b"POST /route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"X-API-Key: {API_KEY}\r\n".encode()
        + extra
        + body_framing
    )


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def _body(response: bytes) -> dict[str, object]:
    answer: dict[str, object] = json.loads(response.partition(b"\r\n\r\n")[2])
    return answer


def test_a_signal_offering_h2c_is_routed_with_its_body(router: RouterServer) -> None:
    sock = connect(router)
    try:
        sock.sendall(_post(f"Content-Length: {len(SIGNAL)}\r\n\r\n".encode() + SIGNAL))
        answer = read_response(sock)
        assert _status(answer) == 200, answer
        assert _body(answer)["routed_agents"] == ["alpha"]
    finally:
        sock.close()


def test_a_chunked_body_after_the_offer_arrives_too(router: RouterServer) -> None:
    chunk = b"%x\r\n" % len(SIGNAL) + SIGNAL + b"\r\n"
    chunked = b"Transfer-Encoding: chunked\r\n\r\n" + chunk + b"0\r\n\r\n"
    sock = connect(router)
    try:
        sock.sendall(_post(chunked))
        assert _status(read_response(sock)) == 200
    finally:
        sock.close()


def test_a_body_sent_after_the_offer_is_never_read_as_a_request(router: RouterServer) -> None:
    smuggled = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    sock = connect(router)
    try:
        sock.sendall(_post(f"Content-Length: {len(smuggled)}\r\n\r\n".encode()))
        wait_for(lambda: _reading_post(router), what="the router to have read the head")
        sock.sendall(smuggled)  # the body, in a read of its own: once answered as a request
        first = read_response(sock)
        assert _status(first) == 400
        assert _body(first)["error"] == {  # the body is what it is: not JSON
            "code": "invalid_json",
            "message": "body is not valid JSON: Expecting value at line 1 column 1",
        }
        sock.sendall(b"GET /no-such-page HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _status(read_response(sock)) == 404  # the next answer is this request's
    finally:
        sock.close()


def _reading_post(router: RouterServer) -> bool:
    """The head has been read: a connection has a request cycle for it."""
    return any(
        getattr(c, "cycle", None) is not None and c.cycle.scope["method"] == "POST"
        for c in router.server_state.connections
    )


def test_a_websocket_offer_gets_the_json_answer_of_its_request(router: RouterServer) -> None:
    """uvicorn took the WebSocket handshake, and Starlette refused it with an empty 403."""
    offer = (
        b"GET /route HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    sock = connect(router)
    try:
        sock.sendall(offer)
        answer = read_response(sock)
        assert _status(answer) == 405
        assert _body(answer)["error"]["code"] == "method_not_allowed"  # type: ignore[index]
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _status(read_response(sock)) == 200
    finally:
        sock.close()


def test_connect_is_refused_and_the_connection_closed(router: RouterServer) -> None:
    sock = connect(router)
    try:
        sock.sendall(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
        answer = read_response(sock)
        assert _status(answer) == 400
        assert _body(answer)["error"]["code"] == "invalid_http"  # type: ignore[index]
        assert sock.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        pytest.fail("no JSON 400 before the close")
    finally:
        sock.close()
