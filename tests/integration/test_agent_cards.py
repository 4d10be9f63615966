"""``router-service agents check`` and ``check-config --online`` against real demo A2A agents."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from router_service.cli import main
from router_service.devtools.demo_agents import RunningAgents
from tests.support.routing_files import Entry, agent, routing_text


def write(tmp_path: Path, *agents: Entry) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(routing_text(agents, {"default": {"agents": ["plain"]}}))
    return path


def test_matching_cards_of_both_versions_are_ok(tmp_path: Path, agents: RunningAgents) -> None:
    path = write(
        tmp_path,
        agent("plain", agents.url("plain")),
        agent("new", agents.a2a_url("new"), protocol="a2a"),
        agent("old", agents.a2a_url("old", "0.3"), protocol="a2a", a2a_version="0.3"),
    )
    result = CliRunner().invoke(main, ["agents", "check", "--config", str(path)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if " ok " in f" {line} "]
    assert len(rows) == 2
    assert "0.3.0" in result.output
    assert "plain" not in result.output  # HTTP agents have no card


def test_a_version_mismatch_and_a_missing_card_fail(tmp_path: Path, agents: RunningAgents) -> None:
    path = write(
        tmp_path,
        agent("plain", agents.url("plain")),
        # The 1.0 agent's card says 1.0; the file claims 0.3.
        agent("wrong", agents.a2a_url("wrong"), protocol="a2a", a2a_version="0.3"),
        agent("gone", "http://127.0.0.1:9/a2a/gone", protocol="a2a"),
    )
    result = CliRunner().invoke(main, ["check-config", str(path), "--online"])
    assert result.exit_code == 1
    assert "ok (3 agents" in result.output
    assert "offers version 1.0, not" in result.output.replace("\n", " ")
    assert "gone" in result.output
    assert "cannot fetch" in result.output
