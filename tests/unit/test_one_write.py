"""``OneWrite``: a response's status line and headers leave with its first body bytes, in one
write; nothing is held that the client waits for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from router_service.api.protocol import OneWrite


@dataclass
class _Transport:
    writes: list[bytes] = field(default_factory=list)
    closed: bool = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> Any:
        return f"extra {name}"


@dataclass
class _Cycle:
    response_started: bool = False
    response_complete: bool = False


HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"


def test_head_and_body_leave_in_one_write() -> None:
    transport, cycle = _Transport(), _Cycle()
    wrapped = OneWrite(transport, cycle)  # type: ignore[arg-type]
    cycle.response_started = True
    wrapped.write(HEAD)
    assert transport.writes == []
    wrapped.write(b"{}")
    assert transport.writes == [HEAD + b"{}"]


def test_after_the_first_body_bytes_every_chunk_passes_straight_through() -> None:
    transport, cycle = _Transport(), _Cycle(response_started=True)
    wrapped = OneWrite(transport, cycle)  # type: ignore[arg-type]
    for chunk in (HEAD, b"a", b"b", b"c"):
        wrapped.write(chunk)
    assert transport.writes == [HEAD + b"a", b"b", b"c"]


def test_100_continue_before_the_response_is_not_held() -> None:
    transport, cycle = _Transport(), _Cycle()
    wrapped = OneWrite(transport, cycle)  # type: ignore[arg-type]
    wrapped.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]


def test_a_head_without_body_bytes_leaves_on_flush_or_close() -> None:
    transport, cycle = _Transport(), _Cycle(response_started=True)
    wrapped = OneWrite(transport, cycle)  # type: ignore[arg-type]
    wrapped.write(HEAD)
    wrapped.flush()  # the response completed with no body write (HEAD)
    assert transport.writes == [HEAD]

    transport, cycle = _Transport(), _Cycle(response_started=True)
    wrapped = OneWrite(transport, cycle)  # type: ignore[arg-type]
    wrapped.write(HEAD)
    wrapped.close()  # the app failed after starting its response
    assert transport.writes == [HEAD]
    assert transport.closed
    assert wrapped.is_closing()
    assert wrapped.get_extra_info("peername") == "extra peername"
