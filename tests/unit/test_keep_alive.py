"""The process's idle connections: longest idle first, closed past the limit."""

from __future__ import annotations

from router_service.api.keep_alive import IdleConnections


class Conn:
    def __init__(self, name: str, closed: list[str]) -> None:
        self.name = name
        self._closed = closed

    def close_idle(self) -> None:
        self._closed.append(self.name)


def test_past_the_limit_the_longest_idle_is_closed() -> None:
    closed: list[str] = []
    a, b, c = (Conn(name, closed) for name in "abc")
    idle = IdleConnections(limit=2)
    idle.idle(a)
    idle.idle(b)
    assert closed == []
    idle.idle(c)
    assert closed == ["a"]
    assert len(idle) == 2


def test_a_connection_that_got_bytes_is_not_closed_and_queues_again_at_the_back() -> None:
    closed: list[str] = []
    a, b, c = (Conn(name, closed) for name in "abc")
    idle = IdleConnections(limit=2)
    idle.idle(a)
    idle.idle(b)
    idle.busy(a)  # a request arrived on a
    idle.idle(c)
    assert closed == []
    idle.idle(a)  # a answered: idle again, now the most recent
    assert closed == ["b"]


def test_busy_on_a_connection_never_idle_is_harmless() -> None:
    idle = IdleConnections(limit=1)
    idle.busy(Conn("a", []))
    assert len(idle) == 0
