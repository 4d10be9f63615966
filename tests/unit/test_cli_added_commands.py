"""Commands other distributions add to ``router-service`` (entry-point group
``router_service.commands``): the tools add ``load``; without them there is no ``load``."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable

import click
import pytest
from click.testing import CliRunner

from router_service.cli import COMMANDS_GROUP, main


def _only(
    *entries: importlib.metadata.EntryPoint,
) -> Callable[..., list[importlib.metadata.EntryPoint]]:
    def entry_points(*, group: str) -> list[importlib.metadata.EntryPoint]:
        return [entry for entry in entries if entry.group == group]

    return entry_points


def _entry(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group=COMMANDS_GROUP)


def test_the_tools_add_load_by_entry_point() -> None:
    entries = importlib.metadata.entry_points(group=COMMANDS_GROUP)

    assert {entry.name: entry.value for entry in entries} == {
        "load": "loadgen.command:load_command"
    }
    help_text = CliRunner().invoke(main, ["--help"]).output
    assert "load" in help_text.split("Commands:", 1)[1]


def test_without_the_tools_load_is_neither_listed_nor_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.metadata, "entry_points", _only())

    listed = CliRunner().invoke(main, ["--help"])
    run = CliRunner().invoke(main, ["load", "-n", "1"])

    assert listed.exit_code == 0
    assert " load " not in listed.output
    assert " demo-agents " in listed.output  # the demo agents stay in the product
    assert run.exit_code == 2
    assert "No such command 'load'" in run.output


def test_an_added_command_never_replaces_one_of_the_routers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(
        importlib.metadata, "entry_points", _only(_entry("serve", "loadgen.command:load_command"))
    )

    command = main.get_command(click.Context(main), "serve")

    assert command is not None
    assert command.name == "serve"
    assert main.list_commands(click.Context(main)).count("serve") == 1


def test_an_entry_point_that_is_not_a_click_command_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.metadata, "entry_points", _only(_entry("odd", "json:dumps")))

    result = CliRunner().invoke(main, ["odd"])

    assert result.exit_code == 1
    assert "json:dumps (router_service.commands) is not a click command" in result.output
