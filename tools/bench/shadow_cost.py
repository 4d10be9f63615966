"""``python -m bench.shadow_cost``: what SHADOW_ROUTING_CONFIG adds to a signal's hot path.

A micro-benchmark of the step that shadow mode touches, the plan (classify + route), for the
shipped routing file and its own test payloads: without a shadow, then with the same file as
shadow (the worst case for matching, every rule evaluated twice; no difference is reported, so no
log line) and with a shadow that differs on every signal (a metric increment and a log line
each). Prints microseconds per signal, best of several repeats.
"""

from __future__ import annotations

import io
import sys
import timeit
from datetime import UTC, datetime
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, cast

from router_service.config.routing_file import DEFAULT_ROUTING_FILE
from router_service.config.routing_source import RoutingSource
from router_service.domain.signal import Signal
from router_service.observability.events import Telemetry
from router_service.observability.logging import configure_logging, get_logger
from router_service.observability.metrics import Metrics
from router_service.service.context import Collaborators
from router_service.service.intake import Intake

REPEATS = 7
NUMBER = 2000


def _intake(shadow: RoutingSource | None, events: Telemetry) -> Intake:
    source = RoutingSource.from_file(DEFAULT_ROUTING_FILE)
    unused = cast(Any, None)
    return Intake(Collaborators(unused, unused, source, events, 1.0, "bench", shadow))


def _other_kinds(directory: Path) -> RoutingSource:
    """The shipped file with every kind renamed: every signal differs."""
    text = DEFAULT_ROUTING_FILE.read_text().split("\ntests:")[0]
    for kind in ("emergency", "feedback", "billing", "policy", "support"):
        text = text.replace(f"kind: {kind}", f"kind: {kind}-v2")
    path = directory / "candidate.yaml"
    path.write_text(text)
    return RoutingSource.from_file(path)


def _per_signal_us(intake: Intake, signals: list[Signal]) -> float:
    shadow = intake._shadow

    def run() -> None:
        for signal in signals:
            plan = intake.plan(signal, None)
            if shadow is not None:  # what Intake.route does after planning
                intake._compare_shadow(shadow, signal, plan)

    times = timeit.repeat(run, number=NUMBER, repeat=REPEATS)
    return min(times) / (NUMBER * len(signals)) * 1e6


def main() -> None:
    source = RoutingSource.from_file(DEFAULT_ROUTING_FILE)
    payloads = [case.payload for case in source.current().config.tests]
    now = datetime.now(UTC)
    signals = [Signal.create(sender_id="b", payload=dict(p), timestamp=now) for p in payloads]
    # The router's JSON log lines, written to memory: the cost measured is making them.
    sink = io.TextIOWrapper(io.BytesIO())  # kept open until the end
    terminal, sys.stdout = sys.stdout, sink
    configure_logging("INFO")
    sys.stdout = terminal
    events = Telemetry(Metrics(), logger=get_logger("bench"))
    with TemporaryDirectory() as directory:
        differing = _other_kinds(Path(directory))
    rows = [
        ("no shadow", _per_signal_us(_intake(None, events), signals)),
        ("shadow, same rules", _per_signal_us(_intake(source, events), signals)),
        ("shadow, differs on every signal", _per_signal_us(_intake(differing, events), signals)),
    ]
    base = rows[0][1]
    print(f"plan step per signal, {len(signals)} payloads, best of {REPEATS} x {NUMBER}:")
    for name, us in rows:
        print(f"  {name:34s} {us:6.2f} us  (+{us - base:5.2f} us)")


if __name__ == "__main__":
    main()
