#!/usr/bin/env python3
"""Generate the router's Grafana dashboard, ``dashboards/router.json`` (stdlib only).

    python deploy/grafana/build_dashboard.py           # write the JSON
    python deploy/grafana/build_dashboard.py --check   # exit 1 when the committed JSON is stale

Edit the panels here, never the JSON. The latency thresholds and the alert-state panels come from
the Prometheus rules (``deploy/prometheus/rules``), so they cannot drift from what the alerts use.
Every query is plain PromQL (no Grafana variables) so that a test can run each one against a
real Prometheus.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RULES = HERE.parent / "prometheus" / "rules"
OUTPUT = HERE / "dashboards" / "router.json"

DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
GRID_WIDTH = 24

# recording.yml is a file we write, so its objective lines have one shape; the dashboard test
# checks the thresholds against a real YAML parse of the same file.
_OBJECTIVE = re.compile(r"- record: (router:objective_\w+)\s*\n\s*expr: vector\(([0-9.]+)\)")
_ALERT = re.compile(r"^\s*- alert: (\w+)\s*$", re.MULTILINE)


def objectives(rules: Path = RULES) -> dict[str, float]:
    """The constant objective series of recording.yml, by record name."""
    found = {
        name: float(value)
        for name, value in _OBJECTIVE.findall((rules / "recording.yml").read_text())
    }
    for name in ("router:objective_latency_p50_seconds", "router:objective_latency_p95_seconds"):
        if name not in found:
            raise SystemExit(f"{rules / 'recording.yml'}: no `vector(...)` rule records {name}")
    return found


def alert_names(rules: Path = RULES) -> list[str]:
    """Alert names of alerts.yml in file order, once each (an alert may have several rules)."""
    return list(dict.fromkeys(_ALERT.findall((rules / "alerts.yml").read_text())))


# --------------------------------------------------------------------------- panels


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = "__auto"


def _targets(queries: Sequence[Query]) -> list[dict[str, Any]]:
    return [
        {
            "datasource": DATASOURCE,
            "expr": query.expr,
            "legendFormat": query.legend,
            "range": True,
            "refId": chr(ord("A") + index),
        }
        for index, query in enumerate(queries)
    ]


def _steps(*values: tuple[str, float | None]) -> dict[str, Any]:
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in values]}


def timeseries(
    title: str,
    description: str,
    queries: Sequence[Query],
    unit: str,
    *,
    thresholds: dict[str, Any] | None = None,
    stacked: bool = False,
) -> dict[str, Any]:
    custom: dict[str, Any] = {
        "drawStyle": "line",
        "fillOpacity": 20 if stacked else 0,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if stacked else "none"},
        "thresholdsStyle": {"mode": "dashed" if thresholds else "off"},
    }
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _targets(queries),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "min": 0,
                "color": {"mode": "palette-classic"},
                "custom": custom,
                "thresholds": thresholds or _steps(("green", None)),
            },
            "overrides": [],
        },
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    }


def stat(
    title: str,
    description: str,
    queries: Sequence[Query],
    unit: str = "none",
    *,
    text_mode: str = "value",
    thresholds: dict[str, Any] | None = None,
    mappings: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": _targets(queries),
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                "thresholds": thresholds or _steps(("blue", None)),
                "mappings": mappings or [],
                "color": {"mode": "thresholds"},
            },
            "overrides": [],
        },
        "options": {
            "colorMode": "background" if mappings else "value",
            "graphMode": "none",
            "justifyMode": "center",
            "textMode": text_mode,
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
    }


def alert_state(alertname: str) -> dict[str, Any]:
    """0 ok, 1 pending, 2 firing; ``or vector(0)`` so that a quiet alert shows OK, not no data."""
    selector = f'ALERTS{{alertname="{alertname}", alertstate='
    expr = f'(2 * max({selector}"firing"}})) or max({selector}"pending"}}) or vector(0)'
    states = {"0": ("OK", "green"), "1": ("pending", "orange"), "2": ("firing", "red")}
    mappings = [
        {
            "type": "value",
            "options": {
                value: {"text": text, "color": color, "index": index}
                for index, (value, (text, color)) in enumerate(states.items())
            },
        }
    ]
    return stat(
        alertname,
        f"State of the {alertname} alert (deploy/prometheus/rules/alerts.yml).",
        [Query(expr, "state")],
        thresholds=_steps(("green", None), ("orange", 1), ("red", 2)),
        mappings=mappings,
    )


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


class Layout:
    """Gives each panel its id and place: left to right, rows across the whole width."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self._x = self._y = self._line_height = 0

    def row(self, title: str) -> None:
        self._newline()
        self._place(row(title), GRID_WIDTH, 1)
        self._newline()

    def add(self, panel: dict[str, Any], width: int, height: int = 8) -> None:
        if self._x + width > GRID_WIDTH:
            self._newline()
        self._place(panel, width, height)

    def _place(self, panel: dict[str, Any], width: int, height: int) -> None:
        grid = {"h": height, "w": width, "x": self._x, "y": self._y}
        self.panels.append({"id": len(self.panels) + 1, "gridPos": grid, **panel})
        self._x += width
        self._line_height = max(self._line_height, height)

    def _newline(self) -> None:
        self._y += self._line_height
        self._x = self._line_height = 0


# --------------------------------------------------------------------------- the dashboard


def latency_thresholds(goals: dict[str, float]) -> dict[str, Any]:
    return _steps(
        ("green", None),
        ("orange", goals["router:objective_latency_p50_seconds"]),
        ("red", goals["router:objective_latency_p95_seconds"]),
    )


def _latency_rows(layout: Layout, goals: dict[str, float]) -> None:
    objective = latency_thresholds(goals)
    p50_ms = goals["router:objective_latency_p50_seconds"] * 1000
    p95_ms = goals["router:objective_latency_p95_seconds"] * 1000
    lines = (
        f"Dashed lines: the p50 objective ({p50_ms:g} ms) and the p95 objective ({p95_ms:g} ms)."
    )
    layout.row("Latency")
    overall = [Query(f"router:latency_seconds:{q}_1m", q) for q in ("p50", "p95", "p99")]
    layout.add(
        timeseries(
            "/route latency, all kinds", f"Over 1m. {lines}", overall, "s", thresholds=objective
        ),
        12,
    )
    for q in ("p50", "p95", "p99"):
        by_kind = [Query(f"kind:router_latency_seconds:{q}_1m", "{{kind}}")]
        title = f"/route latency {q} by kind"
        layout.add(timeseries(title, f"Over 1m. {lines}", by_kind, "s", thresholds=objective), 12)
    split = [
        Query("router:overhead_seconds:p50_1m", "router overhead p50"),
        Query("router:overhead_seconds:p95_1m", "router overhead p95"),
        Query("router:agent_call_latency_seconds:p50_1m", "agent attempt p50"),
        Query("router:agent_call_latency_seconds:p95_1m", "agent attempt p95"),
    ]
    layout.add(
        timeseries(
            "Router overhead vs agent time",
            "The router's own time per signal (total minus the slowest awaited agent call) "
            "against the time of one agent attempt.",
            split,
            "s",
        ),
        12,
    )
    layout.add(
        timeseries(
            "Agent attempt p95 by agent",
            "Over 1m, every outcome.",
            [Query("agent:agent_call_latency_seconds:p95_1m", "{{agent}}")],
            "s",
        ),
        12,
    )


def _traffic_rows(layout: Layout) -> None:
    layout.row("Traffic and errors")
    layout.add(
        timeseries(
            "Signals received by kind",
            "Validated signals per second, duplicates included.",
            [Query("kind:signals_received:rate1m", "{{kind}}")],
            "reqps",
            stacked=True,
        ),
        8,
    )
    layout.add(
        timeseries(
            "Signals completed by status",
            "delivered, partial (some agents failed) or dead_lettered (none succeeded).",
            [Query("sum by (status) (rate(signals_completed_total[1m]))", "{{status}}")],
            "reqps",
            stacked=True,
        ),
        8,
    )
    layout.add(
        timeseries(
            "HTTP responses by status class",
            "Every route, per second.",
            [Query("sum by (status_class) (rate(http_responses_total[1m]))", "{{status_class}}")],
            "reqps",
            stacked=True,
        ),
        8,
    )
    layout.add(
        timeseries(
            "Error ratio",
            "Signals not delivered over signals completed, 5xx over all responses, and the "
            "SLI of the error-budget alerts, against the error budget.",
            [
                Query("router:signals_failed:ratio_rate1m", "not delivered / completed"),
                Query("router:http_5xx:ratio_rate1m", "5xx / responses"),
                Query("router:slo_errors:ratio_rate5m", "SLI errors (5m)"),
                Query("router:objective_error_budget_ratio", "error budget"),
            ],
            "percentunit",
        ),
        8,
    )
    budget = "router:objective_error_budget_ratio"
    burn = [
        Query(f"router:slo_errors:ratio_rate{window} / on() {budget}", window)
        for window in ("5m", "30m", "1h", "6h")
    ]
    burn += [
        Query("router:objective_burn_rate_fast", "fast burn alert (1h and 5m)"),
        Query("router:objective_burn_rate_slow", "slow burn alert (6h and 30m)"),
    ]
    layout.add(
        timeseries(
            "Error budget burn rate",
            "How many times faster than the objective allows the budget is spent; "
            "RouterErrorBudgetBurn fires when both windows of a pair are above its line.",
            burn,
            "short",
        ),
        8,
    )
    layout.add(
        timeseries(
            "Failed agent attempts by agent",
            "Attempts that did not succeed (retryable or permanent), per second.",
            [Query("sum by (agent) (rate(routing_errors_total[1m]))", "{{agent}}")],
            "ops",
        ),
        8,
    )
    layout.add(
        timeseries(
            "Agent attempts by outcome",
            "ok, retryable or permanent, per second.",
            [Query("sum by (outcome) (rate(agent_call_latency_seconds_count[1m]))", "{{outcome}}")],
            "ops",
            stacked=True,
        ),
        12,
    )
    layout.add(
        timeseries(
            "Retries",
            "Agent attempts retried, per second.",
            [Query("sum(rate(retry_attempts_total[1m]))", "retries")],
            "ops",
        ),
        12,
    )


def _dead_letter_rows(layout: Layout) -> None:
    layout.row("Dead letters")
    layout.add(
        timeseries(
            "Dead letters created",
            "Entries per second.",
            [Query("sum(rate(dlq_total[1m]))", "dead-lettered")],
            "ops",
        ),
        8,
    )
    layout.add(
        timeseries(
            "Dead-letter backlog",
            "Pending entries (every replica reports the same queue).",
            [Query("max(dlq_backlog)", "pending")],
            "short",
        ),
        8,
    )
    layout.add(
        timeseries(
            "Replays by outcome",
            "Dead-letter replays in the last 5 minutes.",
            [Query("sum by (outcome) (increase(dlq_replays_total[5m]))", "{{outcome}}")],
            "short",
            stacked=True,
        ),
        8,
    )


def _database_rows(layout: Layout) -> None:
    layout.row("Database")
    db_p95 = (
        "histogram_quantile(0.95, "
        "sum by (operation, le) (rate(db_call_latency_seconds_bucket[1m])))"
    )
    by_operation = [Query(db_p95, "{{operation}}")]
    layout.add(timeseries("Database call p95 by operation", "Over 1m.", by_operation, "s"), 8)
    layout.add(
        timeseries(
            "Database calls by outcome",
            "Per second; RouterDatabaseUnhealthy fires when errors come with no ok.",
            [Query("sum by (outcome) (rate(db_call_latency_seconds_count[1m]))", "{{outcome}}")],
            "ops",
        ),
        8,
    )
    layout.add(
        timeseries(
            "Connection pool",
            "Checked-out connections against the pool size, per instance.",
            [
                Query("sum by (instance) (db_pool_connections_in_use)", "in use {{instance}}"),
                Query("sum by (instance) (db_pool_size)", "size {{instance}}"),
            ],
            "short",
        ),
        8,
    )


def _service_rows(layout: Layout) -> None:
    layout.row("Service")
    layout.add(
        timeseries(
            "In-flight requests",
            "Requests being served, per instance.",
            [Query("sum by (instance) (router_in_flight_requests)", "{{instance}}")],
            "short",
        ),
        12,
    )
    layout.add(
        stat(
            "Instances up",
            "Router targets that answered their last scrape.",
            [Query('sum(up{job="router"})', "up")],
        ),
        6,
    )
    layout.add(
        stat(
            "Version",
            "Versions running (router_build_info), with how many instances run each.",
            [Query("count by (version) (router_build_info)", "{{version}}")],
            text_mode="name",
        ),
        6,
    )


def build(rules: Path = RULES) -> dict[str, Any]:
    """The dashboard as a JSON-ready dict."""
    goals = objectives(rules)
    layout = Layout()
    layout.row("Alerts")
    for name in alert_names(rules):
        layout.add(alert_state(name), 4, 3)
    _latency_rows(layout, goals)
    _traffic_rows(layout)
    _dead_letter_rows(layout)
    _database_rows(layout)
    _service_rows(layout)
    return {
        "id": None,
        "uid": "router-service",
        "title": "Router service",
        "description": "Signal router: latency against objectives, traffic, errors, dead "
        "letters, database. Generated by deploy/grafana/build_dashboard.py.",
        "tags": ["router-service"],
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "time": {"from": "now-1h", "to": "now"},
        "timezone": "utc",
        "annotations": {"list": []},
        "templating": {"list": []},
        "links": [],
        "panels": layout.panels,
        "version": 1,
    }


def render(rules: Path = RULES) -> str:
    return json.dumps(build(rules), indent=2) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail when the JSON is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
