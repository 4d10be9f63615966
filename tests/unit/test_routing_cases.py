"""Routing-file tests: parsed from the file and its sibling, run with a readable diff, and a
file whose tests fail is never served (start-up or reload)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from router_service.cli import main
from router_service.config.routing_file import (
    DEFAULT_ROUTING_FILE,
    load_routing_config,
    parse_routing_config,
)
from router_service.config.routing_source import RoutingSource
from router_service.domain.errors import ConfigError

BASE = """\
agents:
  - {name: a, url: 'http://127.0.0.1:1/a'}
  - {name: b, url: 'http://127.0.0.1:1/b'}
rules:
  - {id: urgent, kind: alarm, when: {keywords: [urgent]}}
  - {id: money, kind: billing, when: {keywords: [invoice]}}
routes:
  alarm: {agents: [a, b], mode: aggregate}
  default: {agents: [b]}
"""

PASSING = """\
tests:
  - name: urgent is an alarm
    payload: {text: "urgent!"}
    kind: alarm
    rule: urgent
    agents: [a, b]
  - payload: {text: "hello"}
    rule: default
"""

# An urgent invoice: the test expects billing, but "urgent" comes first.
FAILING = """\
tests:
  - name: urgent invoice is billing
    payload: {text: "urgent invoice"}
    rule: money
    agents: [b]
"""


def write(tmp_path: Path, routing: str, sibling: str | None = None) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(routing)
    if sibling is not None:
        (tmp_path / "routing.tests.yaml").write_text(sibling)
    return path


def test_the_shipped_file_has_a_passing_test_for_every_rule() -> None:
    result = CliRunner().invoke(main, ["check-config", str(DEFAULT_ROUTING_FILE)])
    assert result.exit_code == 0, result.output
    assert "tests passed" in result.output
    assert "rules no test reaches" not in result.output
    config = load_routing_config(DEFAULT_ROUTING_FILE)
    assert len(config.tests) >= len(config.classifier.rules)


def test_cases_come_from_the_file_and_its_sibling(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + PASSING, sibling=FAILING)
    config = load_routing_config(path)
    assert [c.name for c in config.tests] == [
        "urgent is an alarm",
        "tests[1]",
        "urgent invoice is billing",
    ]
    assert config.tests[0].agents == ("a", "b")
    assert config.tests[2].source.endswith("routing.tests.yaml:2")


def test_a_failing_case_prints_a_readable_diff_and_exits_1(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + FAILING)
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 1
    out = result.output
    assert "FAIL case 'urgent invoice is billing'" in out
    assert "expected rule money, got rule urgent" in out
    assert "expected agents [b], got agents [a, b]" in out
    assert "because urgent won: keywords 'urgent' found at text" in out
    assert "money matched but an earlier rule won" in out
    assert "1 tests: 0 passed, 1 failed" in out


def test_an_invalid_file_exits_2_before_any_test(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "tests:\n  - {payload: {x: 1}, rule: nope}\n")
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 2
    assert "tests[0].rule: unknown rule 'nope' (line" in result.output


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("{payload: {x: 1}}", "needs at least one of kind, rule, agents"),
        ("{payload: [1], kind: a}", "the payload must be a mapping"),
        ("{payload: {x: 1}, agents: [zed]}", "unknown agent 'zed'"),
        ("{payload: {x: 1}, kind: a, expect: b}", "unknown key 'expect'"),
    ],
)
def test_malformed_cases_name_the_path(case: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_routing_config(BASE + f"tests:\n  - {case}\n", "r.yaml")


def test_a_file_whose_tests_fail_is_not_served(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + FAILING)
    with pytest.raises(ConfigError, match="1 of 1 routing tests fail"):
        RoutingSource.from_file(path)


def test_a_reload_whose_tests_fail_keeps_the_old_version(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + PASSING)
    source = RoutingSource.from_file(path)
    before = source.current()
    path.write_text(BASE.replace("keywords: [urgent]", "keywords: [urgent, invoice]") + FAILING)
    result = source.reload()
    assert result.error is not None
    assert "expected rule money, got rule urgent" in result.error.message
    assert source.current() is before
    path.write_text(BASE + PASSING.replace("hello", "hello again"))
    assert source.reload().changed
