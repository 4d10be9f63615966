"""How many connections one client may hold, and all clients together.

Every connection is a file. A client that opens connections and sends nothing held them until
its header timer ran out (10 s), and opened new ones as fast as they closed: from one address,
with no key, it took all of the process's 20,000 files, the router reset other clients'
connections and could open no socket to its database or its agents. So:

- one client (an IPv4 address, an IPv6 /64: ``auth.counted_as``) holds at most
  ``MAX_CONNECTIONS_PER_CLIENT`` at once, busy or not; a proxy in ``TRUSTED_PROXIES`` carries
  many clients and is not counted so;
- all clients together hold at most ``MAX_CONNECTIONS``, by default the limit on open files less
  what the router's own sockets need (its database pool, its agent connections, a margin).

A connection past either limit gets a 503 (``too_many_connections``) at once and is closed: its
client reads the answer when it sends its request.
"""

from __future__ import annotations

import resource
from collections import Counter

from router_service.api.auth import is_trusted_proxy
from router_service.config.settings import IpNetwork, Settings
from router_service.domain.errors import ConfigError

# Files the process keeps for itself beyond its database pool and agent connections: the log,
# the listening sockets, the metrics directory, a reload's routing file.
OWN_FILES = 64


# Fewer connections than this for all clients together is a limit on open files too low for
# the router's own sockets: ``serve`` refuses to start rather than serve one client at a time.
MIN_CLIENT_CONNECTIONS = 64


def default_max_connections(settings: Settings) -> int:
    """The limit on open files (``serve`` raises the soft one to the hard one first), less the
    router's own sockets."""
    return max(1, _files_left_for_clients(settings)[0])


def _files_left_for_clients(settings: Settings) -> tuple[int, int, int]:
    """(files left for clients, the open-files limit, the files the router keeps for itself)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    own = settings.db_pool_size + settings.db_max_overflow + settings.global_concurrency
    return soft - own - OWN_FILES, soft, own + OWN_FILES


def check_open_files(settings: Settings) -> None:
    """``ConfigError`` when the default ``MAX_CONNECTIONS`` would leave clients next to nothing
    (GLOBAL_CONCURRENCY close to the open-files limit left one connection, without a word)."""
    if settings.max_connections:
        return  # the operator's number
    left, limit, own = _files_left_for_clients(settings)
    if left < MIN_CLIENT_CONNECTIONS:
        raise ConfigError(
            f"the open-files limit ({limit}) leaves {max(left, 0)} connections for clients after"
            f" the router's own {own} files (DB_POOL_SIZE + DB_MAX_OVERFLOW + GLOBAL_CONCURRENCY"
            f" + {OWN_FILES}); at least {MIN_CLIENT_CONNECTIONS} are needed: raise the limit"
            " (ulimit -n) or lower GLOBAL_CONCURRENCY"
        )


class ConnectionLimits:
    """The open connections of this process, by client."""

    __slots__ = ("_by_client", "_open", "_per_client", "_proxies", "_total")

    def __init__(self, per_client: int, total: int, proxies: tuple[IpNetwork, ...] = ()) -> None:
        self._per_client = per_client
        self._total = total
        self._proxies = proxies
        self._by_client: Counter[str] = Counter()
        self._open = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        total = settings.max_connections or default_max_connections(settings)
        return cls(settings.max_connections_per_client, total, settings.trusted_proxy_networks)

    def client_of(self, address: str, client: str) -> str:
        """What the connections of the peer at ``address`` (the client ``client``, as
        ``counted_as`` names it) count under here: '' for a trusted proxy (uncounted)."""
        return "" if is_trusted_proxy(address, self._proxies) else client

    def admit(self, client: str) -> str | None:
        """Count a new connection of ``client``; None, or why it is refused (then uncounted)."""
        if self._open >= self._total:
            return f"the router holds its limit of {self._total} connections; retry shortly"
        if client and self._by_client[client] >= self._per_client:
            return (
                f"this address holds {self._per_client} connections already, the most one "
                "client may; reuse them, or close some"
            )
        self._open += 1
        if client:
            self._by_client[client] += 1
        return None

    def release(self, client: str) -> None:
        """An admitted connection closed."""
        self._open -= 1
        if client:
            left = self._by_client[client] - 1
            if left:
                self._by_client[client] = left
            else:
                del self._by_client[client]
