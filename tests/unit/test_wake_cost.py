"""The machine table's wake-cost probe: a real ping-pong between two pinned processes, on the
same core and (where there are two) on the other one, read back by the parent as figures."""

from __future__ import annotations

import os

import pytest

from bench.targets import LOAD_CPU, TARGET_CPU
from bench.wake_cost import RoundTrip, WakeCost, wake_cost


def test_the_probe_times_round_trips_on_the_same_core_and_on_the_other() -> None:
    found = wake_cost(round_trips=400)
    assert found.same_core.cpu_us > 0
    # The sender is one thread: its CPU cannot exceed the wall time (the echo's is not its own).
    assert found.same_core.cpu_us <= found.same_core.wall_us * 1.05
    cores = {int(TARGET_CPU), int(LOAD_CPU)}
    if cores <= os.sched_getaffinity(0):
        assert found.other_core is not None
        assert found.other_core.cpu_us > 0
        assert found.other_core.wall_us > 0
    else:
        assert found.other_core is None


def test_the_probe_leaves_its_callers_cpus_alone() -> None:
    before = os.sched_getaffinity(0)
    wake_cost(round_trips=100)
    assert os.sched_getaffinity(0) == before  # the pinning happened in the child


@pytest.mark.parametrize(
    ("cost", "expected"),
    [
        (
            WakeCost(RoundTrip(9.04, 18.4), RoundTrip(33.3, 77.2)),
            "9.0 µs of the sender's CPU per round trip to a process on the same core, "
            "33.3 µs on the other core (wall 18 / 77 µs)",
        ),
        (
            WakeCost(RoundTrip(9.04, 18.4), None),
            "9.0 µs of the sender's CPU per round trip (one CPU)",
        ),
    ],
)
def test_the_text_names_both_cores_or_says_there_is_one(cost: WakeCost, expected: str) -> None:
    assert cost.text() == expected
