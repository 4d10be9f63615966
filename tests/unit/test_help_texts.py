"""The --help texts tell a newcomer what the README tells them."""

from __future__ import annotations

import re

from click.testing import CliRunner

from router_service.cli import main
from router_service.devtools.demo_modes import MODES


def help_of(*command: str) -> str:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    return result.output


def test_demo_agents_help_lists_every_mode_and_the_control_endpoint() -> None:
    text = help_of("demo-agents")
    listed = set(re.findall(r"^\s{4}(\w+)\s{2,}", text, re.M))
    assert listed == set(MODES)
    assert "PUT /_control/NAME" in text
    assert '"script"' in text


def test_serve_help_says_reload_also_watches_the_routing_file() -> None:
    text = " ".join(help_of("serve").split())
    assert "reload the routing file when it changes" in text
    assert "ROUTING_WATCH" in text
