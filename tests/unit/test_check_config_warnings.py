"""``check-config`` warns about a kind some rule produces but no route names (a typo like
``biling`` sends its signals to ``default``), without failing: such a file is legal."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from router_service.cli import main

TYPO = """\
agents:
  - {name: a, url: 'http://127.0.0.1:1/a'}
  - {name: b, url: 'http://127.0.0.1:1/b'}
rules:
  - {id: invoices, kind: biling, when: {keywords: [invoice]}}
  - {id: refunds, kind: biling, when: {keywords: [refund]}}
  - {id: chatter, kind: smalltalk, when: {keywords: [hello]}}
  - {id: money, kind: billing, when: {keywords: [payment]}}
routes:
  billing: {agents: [a]}
  default: {agents: [b]}
tests:
  - payload: {text: "hello"}
    rule: chatter
    agents: [b]
"""


def test_each_unrouted_kind_is_a_warning_line_and_the_exit_code_stays(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(TYPO)
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: kind 'biling' (rules invoices, refunds) has no route: it goes to default",
        "warning: kind 'smalltalk' (rule chatter) has no route: it goes to default",
    ]
    assert "tests passed" in result.output


def test_a_file_whose_kinds_all_have_routes_has_no_warning(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    # The typo fixed, and small talk sent to default on purpose: a kind default routes.
    path.write_text(TYPO.replace("biling", "billing").replace("smalltalk", "default"))
    result = CliRunner().invoke(main, ["check-config", str(path)])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
