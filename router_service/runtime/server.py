"""``serve``: the environment a server needs, the checks before it starts, and uvicorn (one
process, or a supervisor of workers that turns SIGHUP into a routing reload)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import secrets
import signal
import socket
import sys
import tempfile
from pathlib import Path

from router_service.config.routing_source import RoutingSource, read_version
from router_service.config.settings import Settings
from router_service.domain.errors import ConfigError
from router_service.observability.logging import configure_logging
from router_service.observability.metrics import MULTIPROC_ENV
from router_service.observability.ready import announce_when_ready, http_address, ready_line

APP_FACTORY = "router_service.api.app:create_app"


def prepare_environment(workers: int, reload: bool) -> str | None:
    """What must be in the environment before the settings are read and any metric exists.
    Returns the metrics directory when it was made here (``remove_made_dir`` on the way out)."""
    made_dir = None
    if (workers > 1 and not reload) or os.environ.get(MULTIPROC_ENV):
        made_dir = _share_metrics_between_workers()
    if workers > 1 and not os.environ.get("CONSOLE_SECRET"):
        # Every worker must verify the console sessions the others signed.
        os.environ["CONSOLE_SECRET"] = secrets.token_hex(32)
    if reload:
        # Read by Settings in the server process that uvicorn's reloader starts.
        os.environ.setdefault("ROUTING_WATCH", "true")
    return made_dir


def check_before_serving(settings: Settings, host: str, port: int) -> str:
    """Fail here, in one line (a ``RouterError``): a missing key, a bad routing file (or shadow
    routing file), an old schema, an open-files limit too low for the connections. Returns
    the line announced once the server answers."""
    from router_service.api.app import create_app
    from router_service.api.connection_limits import check_open_files
    from router_service.runtime.startup import preflight

    raise_open_files_limit()  # what the server will have (run raises it too: a no-op then)
    check_open_files(settings)
    routing = RoutingSource.from_file(settings.routing_config)
    if settings.shadow_routing_config is not None:
        # Read as the server will read it (a candidate: its tests need not pass).
        read_version(settings.shadow_routing_config)
    create_app(settings, routing)
    asyncio.run(preflight(settings))
    check_port_free(host, port)
    return ready_line(http_address(host, port), settings.database_url, routing.current())


def check_port_free(host: str, port: int) -> None:
    """``ConfigError`` when ``host:port`` cannot be listened on. With another server on it, the
    ready line was printed (that server answered the readiness probe) before the bind failed,
    and under ``--workers N`` the only word was a JSON line on stdout."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            probe.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {http_address(host, port)}: {reason}") from exc


def run(settings: Settings, host: str, port: int, workers: int, reload: bool, line: str) -> None:
    """Serve until stopped; prints ``line`` on stderr once the server answers."""
    import uvicorn

    from router_service.api.protocol import GuardedHttpProtocol

    raise_open_files_limit()
    configure_logging(settings.log_level)  # before the app's lifespan: a failed bind, say
    announce_when_ready(host, port, line, give_up_s=settings.startup_db_wait_s + 60)
    # uvicorn drains on SIGTERM, then re-raises the signal to the handler it found: make that
    # handler a clean exit, so a drained shutdown ends with status 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    options = {
        "factory": True,
        # TRUSTED_PROXIES alone decides whose X-Forwarded-For counts (uvicorn would trust it
        # from 127.0.0.1 by default).
        "proxy_headers": False,
        "host": host,
        "port": port,
        "loop": "uvloop",
        "http": GuardedHttpProtocol,
        "ws": "none",  # no WebSocket: an upgrade offer is served as HTTP/1.1 (api/protocol.py)
        "access_log": False,
        "log_level": "warning",
        # uvicorn's own records go through the router's JSON lines (configure_logging), not
        # through a text format of uvicorn's on stderr.
        "log_config": None,
        "timeout_graceful_shutdown": int(settings.drain_timeout_s) or None,
    }
    if workers > 1 and not reload:
        _serve_workers(workers, options)
    else:
        uvicorn.run(
            APP_FACTORY,
            reload=reload,
            reload_dirs=[str(Path(__file__).parents[1])] if reload else None,
            **options,  # type: ignore[arg-type]
        )


def raise_open_files_limit() -> None:
    """Every connection is a file: the soft limit on open files (often 1,024) up to the hard one,
    as Go's runtime and nginx's ``worker_rlimit_nofile`` do, so a burst of connections fails on
    the operator's limit, not on a default. The workers inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft >= hard:
        return
    with contextlib.suppress(ValueError, OSError):  # a platform that caps it lower: keep it
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _serve_workers(workers: int, options: dict[str, object]) -> None:
    """uvicorn's multi-process mode, with SIGHUP forwarded to the workers as a routing reload
    rather than a restart of every worker (see ``runtime/supervisor.py``)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from router_service.runtime.supervisor import SUPERVISOR_ENV, ReloadingSupervisor

    os.environ[SUPERVISOR_ENV] = str(os.getpid())  # inherited by the workers
    config = uvicorn.Config(APP_FACTORY, workers=workers, **options)  # type: ignore[arg-type]
    supervisor = ReloadingSupervisor(config, sockets=[config.bind_socket()])
    supervisor.run()
    if supervisor.failed:
        sys.exit(STARTUP_FAILURE)  # no worker could start: not a clean stop


def _exit_cleanly(signum: int, _frame: object) -> None:
    sys.exit(0)


def _share_metrics_between_workers() -> str | None:
    """Prometheus multiprocess mode: each worker writes its samples to files in one directory
    and /metrics, whichever worker answers, reads them all. Stale files from an earlier run
    would be counted again, so the directory starts empty. Returns the directory when serve
    made it (to remove on the way out)."""
    given = os.environ.get(MULTIPROC_ENV)
    directory = given or tempfile.mkdtemp(prefix="router-metrics-")
    Path(directory).mkdir(parents=True, exist_ok=True)
    for stale in Path(directory).glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = directory
    return None if given else directory
