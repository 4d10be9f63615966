"""The process's idle connections: past the limit, the longest idle of the client holding the
most is closed."""

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
    idle.idle(a, "10.0.0.1")
    idle.idle(b, "10.0.0.1")
    assert closed == []
    idle.idle(c, "10.0.0.1")
    assert closed == ["a"]
    assert len(idle) == 2


def test_a_connection_that_got_bytes_is_not_closed_and_queues_again_at_the_back() -> None:
    closed: list[str] = []
    a, b, c = (Conn(name, closed) for name in "abc")
    idle = IdleConnections(limit=2)
    idle.idle(a, "10.0.0.1")
    idle.idle(b, "10.0.0.1")
    idle.busy(a, "10.0.0.1")  # a request arrived on a
    idle.idle(c, "10.0.0.1")
    assert closed == []
    idle.idle(a, "10.0.0.1")  # a answered: idle again, now the most recent
    assert closed == ["b"]


def test_busy_on_a_connection_never_idle_is_harmless() -> None:
    idle = IdleConnections(limit=1)
    idle.busy(Conn("a", []), "10.0.0.1")
    assert len(idle) == 0


def test_past_the_limit_the_client_holding_the_most_loses_its_longest_idle() -> None:
    """Another client's connection, idle a second between its requests, is the longest idle;
    the client keeping many busy is the one that loses one."""
    closed: list[str] = []
    quiet, *busy = (Conn(name, closed) for name in ("quiet", "b1", "b2", "b3"))
    idle = IdleConnections(limit=3)
    idle.idle(quiet, "10.0.0.1")
    for conn in busy:
        idle.idle(conn, "10.0.0.2")
    assert closed == ["b1"]
    assert len(idle) == 3


def test_a_connection_idle_twice_counts_once() -> None:
    idle = IdleConnections(limit=2)
    a = Conn("a", [])
    idle.idle(a, "10.0.0.1")
    idle.idle(a, "10.0.0.1")
    assert len(idle) == 1
