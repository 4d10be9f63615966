"""A client of plain sockets for tests of the router's HTTP protocol itself (timeouts,
keep-alive, pipelining, bytes that are not HTTP), where an HTTP library would hide the bytes."""

from __future__ import annotations

import socket

from tests.support.server import RouterServer


def connect(server: RouterServer, timeout_s: float = 10, source: str = "") -> socket.socket:
    """A connection to ``server``, from ``source`` when given (any 127.x address is this
    machine's: a client of its own address, to the router)."""
    port = int(server.base_url.rsplit(":", 1)[1])
    return socket.create_connection(
        ("127.0.0.1", port), timeout=timeout_s, source_address=(source, 0) if source else None
    )


def read_response(sock: socket.socket, data: bytes = b"") -> bytes:
    """One whole response (head and a ``Content-Length`` body), ``data`` being what was read of
    it already; fails if the connection closes first."""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, data
        body += chunk
    return head + b"\r\n\r\n" + body


def until_closed(sock: socket.socket) -> bytes:
    """Everything the router writes until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data
