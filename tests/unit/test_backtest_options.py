"""``backtest``'s window options: a bad one is a usage error (exit 2, one line naming the
option), never a traceback and never a silently empty report; a bad file is one error line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from router_service.cli import main
from router_service.config.routing_file import DEFAULT_ROUTING_FILE


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--since", "99999999d"], "Invalid value for --since: too far back"),
        (["--since", "999999999999d"], "Invalid value for --since: too far back"),
        (["--since", "1" + "0" * 400 + "s"], "Invalid value for --since: too far back"),
        (["--from", "2026-12-06", "--to", "2026-12-01"], "Invalid value for --from: must be"),
        (["--from", "2026-12-01", "--to", "2026-12-01"], "Invalid value for --from: must be"),
        (["--since", "1h", "--to", "2000-01-01"], "Invalid value for --since: must be"),
    ],
)
def test_a_window_that_cannot_be_is_a_usage_error(options: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["backtest", str(DEFAULT_ROUTING_FILE), *options])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert message in result.output


def test_an_invalid_candidate_is_one_error_line(tmp_path: Path) -> None:
    bad = tmp_path / "candidate.yaml"
    bad.write_text("agents:\n  - {name: a, url: 'ftp://x'}\nroutes:\n  default: {agents: [a]}\n")
    result = CliRunner().invoke(main, ["backtest", str(bad), "--since", "1h"])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    [line] = result.output.strip().splitlines()
    assert line.startswith(f"error: {bad}: agents[0].url")
