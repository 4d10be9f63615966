"""The raw figures of a run as JSON, and back: a report can be rendered again without a rerun."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bench.openloop import OpenLoopResult
from bench.results import BenchResult, TargetInfo
from bench.runner import Check, Plan, Run, ServerSample, Session
from bench.wrk import WrkResult


def dump(result: BenchResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(result), indent=1))


def _server(data: dict[str, Any] | None) -> ServerSample | None:
    if data is None:
        return None
    check = data.pop("check")
    return ServerSample(**data, check=Check(**check) if check else None)


def _run(data: dict[str, Any]) -> Run:
    closed, opened = data.pop("closed"), data.pop("open")
    return Run(
        **{k: v for k, v in data.items() if k != "server"},
        closed=WrkResult(**closed) if closed else None,
        open=OpenLoopResult(**opened) if opened else None,
        server=_server(data["server"]),
    )


def load(path: Path) -> BenchResult:
    data = json.loads(path.read_text())
    plan = data.pop("plan")
    for name in ("connections", "rates", "soak_targets"):
        plan[name] = tuple(plan[name])
    sessions = []
    for session in data.pop("sessions"):
        runs = [_run(run) for run in session.pop("runs")]
        discarded = [_run(run) for run in session.pop("discarded", [])]
        sessions.append(Session(**session, runs=runs, discarded=discarded))
    return BenchResult(
        **{k: v for k, v in data.items() if k not in {"machine", "targets"}},
        plan=Plan(**plan),
        machine=[(str(k), str(v)) for k, v in data["machine"]],
        targets=[TargetInfo(**t) for t in data["targets"]],
        sessions=sessions,
    )
