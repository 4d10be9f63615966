"""The routing source: the routing file's active version, replaced whole when the file changes.

Components ask ``current()`` for each piece of work (a signal, a replayed entry, a recovered
signal) and never keep a copy, so a reload reaches all of them, and one piece of work is routed
wholly by one version. A version is immutable; swapping one in is a single reference assignment,
so a reader sees either the old version or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from router_service.config.routing_cases import require_passing, with_sibling_cases
from router_service.config.routing_file import RoutingConfig, parse_routing_config
from router_service.domain.errors import ConfigError

VERSION_HEX_DIGITS = 12


@dataclass(frozen=True, slots=True)
class RoutingVersion:
    """One validated routing file, named by the first 12 hex digits of its SHA-256."""

    config: RoutingConfig
    version: str
    loaded_at: datetime

    @property
    def file(self) -> str:
        return self.config.source

    def describe(self) -> dict[str, object]:
        return {
            "version": self.version,
            "loaded_at": self.loaded_at.isoformat(),
            "file": self.file,
            "agents": len(self.config.agents),
        }


@dataclass(frozen=True, slots=True)
class Reload:
    """What ``reload()`` did. ``changed``: a new version is active. ``error``: the file was
    refused and ``active`` is the version kept. ``previous``: the version active when this
    reload took the lock, so the one it replaced (``active`` itself when nothing changed); read
    before the lock, two overlapping reloads would both name the version before the first."""

    active: RoutingVersion
    changed: bool
    error: ConfigError | None = None
    previous: RoutingVersion = field(kw_only=True)


def content_version(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:VERSION_HEX_DIGITS]


def read_version(path: str | Path) -> RoutingVersion:
    """Read and validate the routing file at ``path`` (with its sibling tests file's cases);
    every problem is a ``ConfigError``. The cases are not run here: see ``serveable``."""
    try:
        data = Path(path).read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read routing file: {exc}") from exc
    config = with_sibling_cases(parse_routing_config(text, str(path)), path)
    return RoutingVersion(config, content_version(data), datetime.now(UTC))


def serveable(path: str | Path) -> RoutingVersion:
    """A version fit to route with: valid, and its own ``tests:`` pass."""
    version = read_version(path)
    require_passing(version.config)
    return version


class RoutingSource:
    """Holds the active routing version; ``reload()`` swaps in a valid new one."""

    def __init__(self, first: RoutingVersion, path: Path | None) -> None:
        self._active = first
        self._path = path
        self._reloading = threading.Lock()  # reloads run in threads; one at a time

    @classmethod
    def from_file(cls, path: str | Path) -> RoutingSource:
        """Raises ``ConfigError`` when the file is unreadable, invalid, or fails its tests."""
        return cls(serveable(path), Path(path))

    @classmethod
    def fixed(cls, config: RoutingConfig) -> RoutingSource:
        """A source that never reloads, for a configuration built in memory."""
        version = content_version(repr(config).encode())
        return cls(RoutingVersion(config, version, datetime.now(UTC)), None)

    @property
    def path(self) -> Path | None:
        """The file ``reload()`` reads (``None`` for a fixed source)."""
        return self._path

    def current(self) -> RoutingVersion:
        return self._active

    def reload(self) -> Reload:
        """Re-read the file. A valid file with new content whose tests pass becomes active at
        once; an invalid one (or one failing its tests) is refused and the active version
        stays; identical content changes nothing."""
        with self._reloading:
            active = self._active
            if self._path is None:
                return Reload(active, changed=False, previous=active)
            try:
                candidate = serveable(self._path)
            except ConfigError as exc:
                return Reload(active, changed=False, error=exc, previous=active)
            if candidate.version == active.version:
                return Reload(active, changed=False, previous=active)
            self._active = candidate
            return Reload(candidate, changed=True, previous=active)
