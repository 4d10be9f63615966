"""The routing source: versions by content, atomic swaps, a bad file never replaces a good one."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
import structlog

from router_service.config.routing_source import Reload, RoutingSource, RoutingVersion
from router_service.config.routing_watch import watch_routing
from router_service.domain.signal import Signal
from router_service.service.context import Collaborators
from router_service.service.intake import Intake
from tests.support import routing_files
from tests.support.polling import eventually


def keyword_routing(keyword: str, kind: str, to: str = "a") -> str:
    """Agents a, b, c; one rule ``keyword -> kind``; the kind routed to ``to``."""
    return routing_files.routing_text(
        [routing_files.agent(name, f"http://127.0.0.1:1/{name}") for name in "abc"],
        {kind: {"agents": [to]}, "default": {"agents": ["c"]}},
        [{"id": f"r-{kind}", "kind": kind, "when": {"keywords": [keyword]}}],
    )


def sha12(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def kind_of(version: RoutingVersion, payload: dict[str, Any]) -> str:
    return version.config.classifier.classify(payload).kind


@pytest.fixture
def routing(tmp_path: Path) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(keyword_routing("zebra", "animals"))
    return path


def test_the_version_is_the_first_twelve_hex_digits_of_the_files_sha256(routing: Path) -> None:
    source = RoutingSource.from_file(routing)
    active = source.current()
    assert active.version == sha12(routing.read_text())
    assert active.file == str(routing)
    assert active.loaded_at.tzinfo is UTC
    assert kind_of(active, {"m": "a zebra"}) == "animals"


def test_reload_swaps_in_a_valid_new_file(routing: Path) -> None:
    source = RoutingSource.from_file(routing)
    old = source.current()
    routing.write_text(keyword_routing("giraffe", "tall"))
    result = source.reload()
    assert result.changed
    assert result.error is None
    assert source.current() is result.active
    assert source.current().version == sha12(routing.read_text())
    assert source.current().loaded_at >= old.loaded_at
    assert kind_of(source.current(), {"m": "a giraffe"}) == "tall"
    # Whoever still holds the old version keeps a whole, unchanged one.
    assert kind_of(old, {"m": "a giraffe"}) == "default"
    assert kind_of(old, {"m": "a zebra"}) == "animals"


def test_an_invalid_file_is_refused_and_the_old_version_stays(routing: Path) -> None:
    source = RoutingSource.from_file(routing)
    old = source.current()
    routing.write_text(keyword_routing("giraffe", "tall").replace("keywords", "keywordz"))
    result = source.reload()
    assert not result.changed
    assert result.error is not None
    assert str(routing) in result.error.message
    assert "rules[0].when" in result.error.message
    assert result.active is old
    assert source.current() is old


def test_a_missing_file_is_refused_and_the_old_version_stays(routing: Path) -> None:
    source = RoutingSource.from_file(routing)
    old = source.current()
    routing.unlink()
    result = source.reload()
    assert result.error is not None
    assert "cannot read routing file" in result.error.message
    assert source.current() is old


def test_identical_content_is_not_a_new_version(routing: Path) -> None:
    source = RoutingSource.from_file(routing)
    old = source.current()
    routing.write_text(routing.read_text())
    result = source.reload()
    assert not result.changed
    assert result.error is None
    assert source.current() is old


def test_readers_never_see_a_mix_of_two_versions(tmp_path: Path) -> None:
    """Rules and routes of what a reader gets always belong to the version it names."""
    texts = [keyword_routing("zebra", "animals", "a"), keyword_routing("zebra", "stripes", "b")]
    expected = {sha12(t): k for t, k in zip(texts, ("animals", "stripes"), strict=True)}
    path = tmp_path / "routing.yaml"
    path.write_text(texts[0])
    source = RoutingSource.from_file(path)
    stop = threading.Event()
    mixes: list[str] = []

    def read() -> None:
        while not stop.is_set():
            version = source.current()
            kind = kind_of(version, {"m": "zebra"})
            if expected[version.version] != kind or kind not in version.config.table.routes:
                mixes.append(version.version)

    readers = [threading.Thread(target=read) for _ in range(2)]
    for reader in readers:
        reader.start()
    for swap in range(50):
        path.write_text(texts[(swap + 1) % 2])
        assert source.reload().changed
    stop.set()
    for reader in readers:
        reader.join()
    assert mixes == []


class _Alternating:
    """A source that hands out another version on every call of ``current()``."""

    def __init__(self, versions: list[RoutingVersion]) -> None:
        self.versions, self.calls = versions, 0

    def current(self) -> RoutingVersion:
        self.calls += 1
        return self.versions[(self.calls - 1) % len(self.versions)]


def test_a_signal_is_classified_and_planned_from_one_read_of_the_source(tmp_path: Path) -> None:
    versions = []
    for name, agent in (("first", "a"), ("second", "b")):
        path = tmp_path / f"{name}.yaml"
        path.write_text(keyword_routing("zebra", "animals", agent))
        versions.append(RoutingSource.from_file(path).current())
    source = _Alternating(versions)
    unused = cast(Any, None)  # plan() touches only the routing
    intake = Intake(Collaborators(unused, unused, cast(Any, source), unused, unused, 1.0, "me"))
    signal = Signal.create(sender_id="s", payload={"m": "zebra"}, timestamp=datetime.now(UTC))
    for expected_agent in ("a", "b", "a"):
        plan = intake.plan(signal, None)
        assert plan.agent_names == [expected_agent]
    assert source.calls == 3


class _Recording(RoutingSource):
    """Keeps what every reload did, so a test can wait for the watcher to have acted."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.results: list[Reload] = []

    def reload(self) -> Reload:
        result = super().reload()
        self.results.append(result)
        return result


def test_the_watcher_reloads_an_edited_file_and_keeps_the_old_version_on_a_bad_edit(
    routing: Path,
) -> None:
    source = _Recording.from_file(routing)
    assert isinstance(source, _Recording)
    first = source.current()

    async def scenario() -> None:
        watcher = asyncio.create_task(watch_routing(source, interval_s=0.01))
        try:
            good = keyword_routing("giraffe", "tall")
            routing.write_text(good)
            await eventually(lambda: source.current().version == sha12(good))
            second = source.current()
            assert second is not first
            routing.write_text("agents: [")
            await eventually(lambda: any(r.error is not None for r in source.results))
            assert source.current() is second
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    asyncio.run(scenario())


def test_the_watcher_reports_each_new_version_and_each_refusal_not_a_file_saved_unchanged(
    routing: Path,
) -> None:
    """What it hears feeds the reload metric and /health (they missed the watcher's reloads)."""
    source = _Recording.from_file(routing)
    assert isinstance(source, _Recording)
    heard: list[Reload] = []

    async def scenario() -> None:
        watcher = asyncio.create_task(watch_routing(source, 0.01, on_reload=heard.append))
        try:
            await eventually(lambda: len(source.results) == 1)  # the first look: unchanged
            good = keyword_routing("giraffe", "tall")
            routing.write_text(good)
            await eventually(lambda: len(heard) == 1)
            routing.write_text(good + "\n")  # a new version: its text differs
            await eventually(lambda: len(heard) == 2)
            os.utime(routing, ns=(1, 1))  # the same content saved again: read, not reported
            await eventually(lambda: len(source.results) == 4)
            routing.write_text("agents: [")
            await eventually(lambda: len(heard) == 3)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    asyncio.run(scenario())
    outcomes = [(r.changed, r.error is None) for r in heard]
    assert outcomes == [(True, True), (True, True), (False, False)]
    assert len(source.results) == 5


class _FailingOnce(_Recording):
    """Its next reload fails as a bug would, with something other than a ConfigError."""

    failing = True

    def reload(self) -> Reload:
        if self.failing:
            self.failing = False
            raise RuntimeError("a bug in reading the file")
        return super().reload()


def test_the_watcher_goes_on_after_a_reload_that_failed_unexpectedly(routing: Path) -> None:
    """A file with a value PyYAML could not build raised a ValueError: the watch's task ended,
    silently, and hot reload with it for the life of the process."""
    source = _FailingOnce.from_file(routing)
    assert isinstance(source, _FailingOnce)
    heard: list[Reload] = []

    async def scenario() -> None:
        with structlog.testing.capture_logs() as logs:
            watcher = asyncio.create_task(watch_routing(source, 0.01, on_reload=heard.append))
            try:
                await eventually(lambda: not source.failing)  # the first look failed
                good = keyword_routing("giraffe", "tall")
                routing.write_text(good)
                await eventually(lambda: source.current().version == sha12(good))
            finally:
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
        [failed] = [line for line in logs if line["event"] == "routing.reload_failed"]
        assert failed["error"] == "RuntimeError: a bug in reading the file"

    asyncio.run(scenario())
    refused, reloaded = heard  # the failure counts as a refusal: the old version stayed
    assert refused.error is not None
    assert not refused.changed
    assert refused.error.message == f"{routing}: RuntimeError: a bug in reading the file"
    assert reloaded.changed
    assert reloaded.error is None


def test_a_value_pyyaml_cannot_build_is_refused_on_reload_and_the_old_version_stays(
    routing: Path,
) -> None:
    source = RoutingSource.from_file(routing)
    before = source.current()
    routing.write_text(keyword_routing("giraffe", "tall").replace("giraffe", "!!int giraffe", 1))
    result = source.reload()
    assert result.error is not None
    assert "cannot read 'giraffe'" in result.error.message
    assert source.current() is before
