"""The reload report names the version each reload replaced, also when two reloads overlap."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from router_service.config import routing_source
from router_service.config.routing_source import Reload, RoutingSource, RoutingVersion
from router_service.runtime.reload import ReloadReport, RoutingReloader
from tests.support import routing_files

# A bound on waiting for another thread (a broken build fails instead of hanging), never a pause.
WAIT_S = 10.0


def keyword_routing(keyword: str) -> str:
    """One agent; one rule ``keyword -> found``: each keyword makes a version of its own."""
    return routing_files.routing_text(
        [routing_files.agent("a", "http://127.0.0.1:1/a")],
        {"default": {"agents": ["a"]}},
        [{"id": "found", "kind": "found", "when": {"keywords": [keyword]}}],
    )


class Recorded:
    """The reload events, as the audit log receives them."""

    def __init__(self) -> None:
        self.reports: list[ReloadReport] = []

    def routing_reloaded(self, report: ReloadReport) -> None:
        self.reports.append(report)


class SecondReleasesFirst(RoutingSource):
    """The second call of ``reload()`` lets the first one (held in its loader) go on."""

    def __init__(self, first: RoutingVersion, path: Path, release: threading.Event) -> None:
        super().__init__(first, path)
        self._release = release
        self._calls = 0

    def reload(self) -> Reload:
        self._calls += 1  # calls come one at a time: the test starts the second after the first
        if self._calls == 2:
            self._release.set()  # before this reload waits for the lock the first one holds
        return super().reload()


def test_overlapping_reloads_each_report_the_version_they_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(keyword_routing("zebra"))
    loading, release = threading.Event(), threading.Event()
    source = SecondReleasesFirst(routing_source.serveable(path), path, release)
    original = source.current().version
    load = routing_source.serveable
    loads = 0

    def slow_first_load(at: str | Path) -> RoutingVersion:
        """The first reload reads its file, then holds the lock until the second has begun."""
        nonlocal loads
        loads += 1
        version = load(at)
        if loads == 1:
            loading.set()
            assert release.wait(WAIT_S), "the second reload never began"
        return version

    monkeypatch.setattr(routing_source, "serveable", slow_first_load)
    events = Recorded()
    reloader = RoutingReloader(source, events)

    async def overlap() -> list[ReloadReport]:
        path.write_text(keyword_routing("giraffe"))
        slow = asyncio.create_task(reloader.reload(trigger="api", by="ops"))
        assert await asyncio.to_thread(loading.wait, WAIT_S)
        path.write_text(keyword_routing("okapi"))
        meanwhile = asyncio.create_task(reloader.reload(trigger="sighup"))
        return list(await asyncio.gather(slow, meanwhile))

    slow, meanwhile = asyncio.run(overlap())
    assert (slow.outcome, meanwhile.outcome) == ("reloaded", "reloaded")
    assert slow.previous_version == original
    assert meanwhile.previous_version == slow.active.version != original
    assert meanwhile.active is source.current()
    # The audit chain has no gap: each line's previous version is the one before it.
    audit = {(r.previous_version, r.active.version) for r in events.reports}
    assert audit == {
        (original, slow.active.version),
        (slow.active.version, source.current().version),
    }
