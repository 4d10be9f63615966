"""Watching the routing file: reload it when it changes, and say in one log line what happened.

The file's status (modification time, size, inode) is polled every ``interval_s``. Polling,
rather than inotify (watchfiles), because it behaves the same on every filesystem: bind mounts
from another OS and network filesystems deliver no change events, and a Kubernetes ConfigMap
is updated by swapping a symlink, which ``os.stat`` follows. One ``stat`` per interval costs
nothing measurable, and there is no watcher thread to stop on shutdown.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path

from router_service.config.routing_source import Reload, RoutingSource
from router_service.domain.errors import ConfigError
from router_service.observability.logging import get_logger

WATCH_INTERVAL_S = 0.5

_Signature = tuple[int, int, int] | None


def _signature(path: Path) -> _Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None  # gone for now (a save in progress, or deleted): reload() says which
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def log_reload(result: Reload, *, was_refused: bool = False) -> None:
    """One line: the version now active, or why the file was refused and which version stays.

    Identical content logs nothing, unless the file had been refused: then the line says the
    file is valid again."""
    log = get_logger("routing")
    active = result.active
    if result.error is not None:
        log.error(
            "routing.reload_failed",
            error=result.error.message,
            file=active.file,
            kept_version=active.version,
        )
    elif result.changed or was_refused:
        log.info(
            "routing.reloaded",
            file=active.file,
            version=active.version,
            agents=len(active.config.agents),
            rules=len(active.config.classifier.rules),
            routes=len(active.config.table.routes),
        )


async def watch_routing(
    source: RoutingSource,
    interval_s: float = WATCH_INTERVAL_S,
    on_reload: Callable[[Reload], object] | None = None,
) -> None:
    """Reload ``source`` whenever its file changes, until cancelled. A reload that fails
    unexpectedly is logged, and the watch goes on: it ended silently, and hot reload with it,
    for the life of the process. ``on_reload`` hears of every new version and every refusal
    (the reload metric and ``/health``'s ``last_reload``), not of a file saved unchanged."""
    path = source.path
    if path is None:
        return
    # The first look always reloads: the file may have changed since the source read it, and
    # identical content costs a hash and changes nothing.
    seen: _Signature | str = "not looked at yet"
    refused = False
    while True:
        await asyncio.sleep(interval_s)
        now = _signature(path)
        if now == seen:
            continue
        seen = now
        try:
            result = await asyncio.to_thread(source.reload)
        except Exception as exc:  # a bug in reading a file must not end the watch for good
            kept = source.current()
            error = f"{type(exc).__name__}: {exc}"
            get_logger("routing").exception(
                "routing.reload_failed", error=error, file=str(path), kept_version=kept.version
            )
            result = Reload(kept, False, ConfigError(f"{path}: {error}"), previous=kept)
        else:
            log_reload(result, was_refused=refused)
        if on_reload is not None and (result.changed or result.error is not None):
            on_reload(result)
        refused = result.error is not None
