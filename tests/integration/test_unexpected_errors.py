"""A bug in an endpoint (an exception no handler maps) is a JSON 500 in its request's trace, and
the client's connection serves on; both backends."""

from __future__ import annotations

import json

from tests.support.raw_http import connect, read_response
from tests.support.server import RouterServer

CRASHING = "/test-only/crash"


async def _crash() -> None:
    raise RuntimeError("a bug in an endpoint")


def test_an_unexpected_error_is_a_json_500_with_its_trace_and_the_connection_stays(
    router: RouterServer,
) -> None:
    router.app.add_api_route(CRASHING, _crash)
    sock = connect(router)
    try:
        sock.sendall(f"GET {CRASHING} HTTP/1.1\r\nHost: router\r\n\r\n".encode())
        crashed = read_response(sock)
        head, _, body = crashed.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 500 ")
        assert json.loads(body)["error"]["code"] == "internal_error"
        assert b"\r\ntraceparent: 00-" in head
        assert b"connection: close" not in head.lower()
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: router\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")  # the same connection
    finally:
        sock.close()
