"""Which Postgres settings leave the router's churned tables unvacuumed."""

from __future__ import annotations

import pytest

from router_service.adapters.db.postgres import unreclaimed_space


def test_nothing_to_say_when_autovacuum_runs() -> None:
    assert unreclaimed_space(autovacuum="on", track_counts="on") == []


@pytest.mark.parametrize(
    ("autovacuum", "track_counts", "named"),
    [
        ("off", "on", "autovacuum off"),
        ("on", "off", "track_counts off"),
        ("off", "off", "autovacuum and track_counts off"),
    ],
)
def test_the_warning_names_each_setting_that_stops_it(
    autovacuum: str, track_counts: str, named: str
) -> None:
    [warning] = unreclaimed_space(autovacuum=autovacuum, track_counts=track_counts)
    assert warning.startswith(named)
    assert "signal_leases" in warning
