"""Backtest on both backends: logged traffic through a candidate file, page by page."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from click.testing import CliRunner

from router_service.cli import main
from router_service.config.routing_file import parse_routing_config
from router_service.devtools.demo_agents import RunningAgents
from router_service.service.backtest import backtest
from tests.support.routing_files import routing_yaml
from tests.support.store import open_store


def traffic(client: httpx.Client) -> dict[str, list[str]]:
    sent: dict[str, list[str]] = {"one": [], "race": [], "other": []}
    for kind, count in (("one", 3), ("race", 2), ("other", 1)):
        for index in range(count):
            body = {"sender_id": "bt", "payload": {"route": kind, "i": index}}
            sent[kind].append(client.post("/route", json=body).json()["log_id"])
    return sent


def candidate_text(agents: RunningAgents) -> str:
    """Kind ``one`` becomes ``race`` (alpha and beta); nothing else changes."""
    return routing_yaml(agents, kind_of={"one": "race"})


def test_a_candidate_is_run_over_the_log_in_pages(
    client: httpx.Client, agents: RunningAgents, database_url: str
) -> None:
    sent = traffic(client)
    candidate = parse_routing_config(candidate_text(agents), "candidate.yaml")
    pages: list[int] = []

    async def run() -> dict[str, object]:
        async with open_store(database_url) as store:
            report = await backtest(store, candidate, page=2, on_page=pages.append)
            return report.as_dict()

    report = asyncio.run(run())
    assert pages == [2, 4, 6]  # read two at a time
    assert (report["total"], report["kept"], report["changed"]) == (6, 3, 3)
    [change] = report["changes"]  # type: ignore[misc]
    assert change["old_kind"] == "one"
    assert change["new_kind"] == "race"
    assert (change["old_agents"], change["new_agents"]) == (["alpha"], ["alpha", "beta"])
    assert change["count"] == 3
    assert set(change["sample_log_ids"]) <= set(sent["one"])
    assert len(change["sample_log_ids"]) == 3
    assert report["never_matched"] == ["route-chain", "route-fanout", "route-deadend"]


def test_the_cli_backtests_a_window_with_a_limit(
    client: httpx.Client, agents: RunningAgents, database_url: str, tmp_path: Path
) -> None:
    traffic(client)
    new_file = tmp_path / "candidate.yaml"
    new_file.write_text(candidate_text(agents))
    env = {"DATABASE_URL": database_url, "API_KEY": "k"}
    runner = CliRunner()
    as_json = runner.invoke(
        main, ["backtest", str(new_file), "--since", "1h", "--limit", "4", "--json"], env=env
    )
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.output)["total"] == 4
    empty = runner.invoke(
        main, ["backtest", str(new_file), "--from", "2000-01-01", "--to", "2000-01-02"], env=env
    )
    assert "on 0 logged signals" in empty.output
    table = runner.invoke(main, ["backtest", str(new_file)], env=env)
    assert "kept their route: 3 (50.0%); would change: 3" in table.output
    assert "one -> race" in table.output
    assert "rules that never matched: route-chain, route-fanout, route-deadend" in table.output
    bad = runner.invoke(main, ["backtest", str(new_file), "--since", "yesterday"], env=env)
    assert bad.exit_code == 2
