"""The one line ``serve`` prints once the server answers: where it listens, on which database,
with which routing file. Passwords never appear; SQLite shows the file path as configured."""

from __future__ import annotations

import http.client
import sys
import threading
import time
from urllib.parse import urlsplit

from router_service.config.routing_source import RoutingVersion

_PROBE_EVERY_S = 0.05
# A wildcard address is not something to connect to: ask the loopback of the same family.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def describe_database(url: str) -> str:
    """``sqlite ./var/router.db`` or ``postgresql db.example:5432/routerdb``: kind, where, name."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "unparsable DATABASE_URL"
    kind = scheme.split("+", 1)[0]
    if kind == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute.db: the path follows the third slash.
        return f"sqlite {rest[1:] if rest.startswith('/') else rest or ':memory:'}"
    try:
        parsed = urlsplit(f"{kind}://{rest}")
        host = parsed.hostname or "localhost"
        port = f":{parsed.port}" if parsed.port else ""
    except ValueError:
        return "unparsable DATABASE_URL"
    return f"{kind} {host}{port}/{parsed.path.lstrip('/')}"


def http_address(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def ready_line(address: str, database_url: str, routing: RoutingVersion) -> str:
    agents = len(routing.config.agents)
    return (
        f"router-service ready on {address}; database: {describe_database(database_url)}; "
        f"routing: {routing.file} version {routing.version} ({agents} agents)"
    )


def _answers(host: str, port: int) -> bool:
    connection = http.client.HTTPConnection(host, port, timeout=1)
    try:
        connection.request("GET", "/health/live")
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


def announce_when_ready(host: str, port: int, line: str, give_up_s: float) -> threading.Thread:
    """Print ``line`` on stderr once ``GET /health/live`` answers 200; silent if it never does
    within ``give_up_s`` (the server's own error says why)."""
    probe_host = _WILDCARDS.get(host, host)

    def probe() -> None:
        give_up = time.monotonic() + give_up_s
        while time.monotonic() < give_up:
            if _answers(probe_host, port):
                print(line, file=sys.stderr, flush=True)
                return
            time.sleep(_PROBE_EVERY_S)  # no event to wait on in another process

    thread = threading.Thread(target=probe, name="ready-probe", daemon=True)
    thread.start()
    return thread
