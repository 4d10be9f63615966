"""What a demo agent does with a request: its behaviours (modes) and the ``PUT /_control`` body
that sets them, parsed into frozen values. Pure: no HTTP here (see ``demo_agents``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

TASK_STATES: Final = frozenset(
    {"completed", "failed", "rejected", "canceled", "input-required", "auth-required", "working"}
)
# Every mode and the fields it takes; ``demo-agents --help`` lists the same modes.
MODES: Final[Mapping[str, frozenset[str]]] = {
    "ok": frozenset({"status"}),
    "fail": frozenset({"status", "retry_after"}),
    "slow": frozenset({"delay_ms"}),
    "hang": frozenset(),
    "drip": frozenset({"interval_ms"}),
    "non_json": frozenset(),
    "reset": frozenset(),
    "task": frozenset({"state"}),
    "message": frozenset(),
    "rpc_error": frozenset({"code"}),
}


@dataclass(frozen=True, slots=True)
class Behaviour:
    """What an agent does with one request."""

    mode: str = "ok"
    status: int = 200
    retry_after: int | str | None = None
    delay_ms: float = 200.0
    interval_ms: float = 200.0
    state: str = "completed"
    code: int = -32603


OK: Final = Behaviour()


def _int_in(value: Any, low: int, high: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _milliseconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return float(value)


def _retry_after(value: Any) -> int | str:
    if isinstance(value, str) and value.strip():
        return value  # an HTTP-date or deliberate garbage, passed through verbatim
    return _int_in(value, 0, 86_400, "retry_after")


def parse_behaviour(spec: Any) -> Behaviour:
    """One behaviour from its JSON form; ``ValueError`` says what is wrong."""
    if not isinstance(spec, dict):
        raise ValueError(f"a behaviour is a JSON object, got {spec!r}")
    status = spec.get("status")
    default_mode = "fail" if isinstance(status, int) and status >= 400 else "ok"
    mode = spec.get("mode", default_mode)
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {sorted(MODES)}")
    unknown = set(spec) - {"mode"} - MODES[mode]
    if unknown:
        raise ValueError(f"mode {mode!r} does not take {sorted(unknown)}")
    if mode == "ok":
        return Behaviour(mode, status=_int_in(spec.get("status", 200), 200, 299, "status"))
    if mode == "fail":
        retry_after = spec.get("retry_after")
        return Behaviour(
            mode,
            status=_int_in(spec.get("status", 503), 400, 599, "status"),
            retry_after=None if retry_after is None else _retry_after(retry_after),
        )
    if mode == "slow":
        return Behaviour(mode, delay_ms=_milliseconds(spec.get("delay_ms", 200), "delay_ms"))
    if mode == "drip":
        interval = _milliseconds(spec.get("interval_ms", 200), "interval_ms")
        return Behaviour(mode, interval_ms=interval)
    if mode == "task":
        state = spec.get("state", "completed")
        if state not in TASK_STATES:
            raise ValueError(f"state must be one of {sorted(TASK_STATES)}, got {state!r}")
        return Behaviour(mode, state=state)
    if mode == "rpc_error":
        return Behaviour(mode, code=_int_in(spec.get("code", -32603), -32768, 32767, "code"))
    return Behaviour(mode)


def parse_control(body: Any) -> tuple[Behaviour, list[Behaviour]]:
    """A ``PUT /_control`` body: the standing behaviour and the one-shot script."""
    if not isinstance(body, dict):
        raise ValueError("the control body must be a JSON object")
    spec = dict(body)
    script = spec.pop("script", [])
    if not isinstance(script, list):
        raise ValueError("script must be a list of behaviours")
    steps = []
    for index, item in enumerate(script):
        try:
            steps.append(parse_behaviour(item))
        except ValueError as exc:
            raise ValueError(f"script[{index}]: {exc}") from exc
    return parse_behaviour(spec), steps
