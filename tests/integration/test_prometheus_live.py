"""A real Prometheus scraping a real router: every dashboard and rule query evaluates.

Processes on loopback: demo agents, the router (`router-service migrate`, then `serve`, on
SQLite) and the `prometheus` binary (Debian's package), which scrapes the router every second
and evaluates deploy/prometheus/rules every second. After a burst of traffic (delivered, partial
and dead-lettered signals, retries, client errors, a replay) every PromQL expression of the
dashboard and of the rules is sent to Prometheus' query API.

Without the ``prometheus`` binary this test fails; it never skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

from router_service.config.settings import Settings
from tests.support.db import sqlite_url
from tests.support.polling import wait_for
from tests.support.ports import free_ports
from tests.support.processes import ROOT
from tests.support.routing_files import agent, routing_text

RULES = ROOT / "deploy" / "prometheus" / "rules"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "router.json"
API_KEY = "k"
START_TIMEOUT_S = 30.0
SCRAPE_TIMEOUT_S = 20.0

T = TypeVar("T")


def wait_until(what: str, check: Callable[[], T | None], timeout: float, *logs: Path) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (and the logs)."""

    def tails() -> str:
        return "\n".join(f"--- {log}\n{log.read_text()[-3000:]}" for log in logs)

    return wait_for(check, timeout, interval_s=0.1, what=what, detail=tails)


@contextlib.contextmanager
def spawn(name: str, args: list[str], cwd: Path, env: dict[str, str]) -> Iterator[Path]:
    """A subprocess with its output in ``cwd/name.log`` (yielded), stopped, else killed, after."""
    log = cwd / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield log
        finally:
            popen.terminate()
            try:
                popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait(timeout=10)


def answers(url: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    return check


def clean_environment() -> dict[str, str]:
    """This process' environment without any router setting a developer or CI may have set."""
    settings = {name.upper() for name in Settings.model_fields}
    return {key: value for key, value in os.environ.items() if key.upper() not in settings}


def routing_file(agents_port: int, closed_port: int) -> str:
    """Kinds that end delivered, delivered after a failed attempt, partial and dead-lettered."""
    up = f"http://127.0.0.1:{agents_port}/agents"
    return routing_text(
        [
            agent("fast-agent", f"{up}/fast-agent"),
            agent("backup-agent", f"{up}/backup-agent"),
            # Nothing listens there: connection refused, retried, then given up.
            agent("gone-agent", f"http://127.0.0.1:{closed_port}/agents/gone-agent"),
        ],
        {
            "emergency": {"agents": ["fast-agent", "gone-agent"], "mode": "aggregate"},
            "billing": {"agents": ["gone-agent", "backup-agent"], "mode": "fallback"},
            "feedback": {"agents": ["gone-agent"]},
            "default": {"agents": ["fast-agent"]},
        },
        [
            {"id": "outage", "kind": "emergency", "when": {"keywords": ["outage"]}},
            {"id": "invoice", "kind": "billing", "when": {"keywords": ["invoice"]}},
            {"id": "survey", "kind": "feedback", "when": {"field": "type", "equals": "feedback"}},
        ],
    )


PAYLOADS = [
    {"text": "outage in eu-west"},  # partial
    {"text": "invoice INV-20931 is wrong"},  # delivered by the fallback
    {"type": "feedback", "text": "nice"},  # dead-lettered
    {"text": "hello"},  # delivered
    {"text": "hello again"},  # delivered
]


@dataclass
class Stack:
    router: str
    prometheus: str
    logs: tuple[Path, ...]

    def query(self, expr: str) -> dict[str, Any]:
        response = httpx.get(f"{self.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        body: dict[str, Any] = response.json()
        return body

    def sample_time(self, expr: str) -> float | None:
        """The newest sample timestamp of ``expr`` (unix seconds), if Prometheus has one."""
        result = self.query(f"max(timestamp({expr}))")["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def scraped_after(self, moment: float) -> float:
        """Wait for a scrape of the router that started after ``moment``; its timestamp."""

        def check() -> float | None:
            scraped = self.sample_time('up{job="router"}')
            return scraped if scraped is not None and scraped > moment else None

        return wait_until(f"a scrape after {moment}", check, SCRAPE_TIMEOUT_S, *self.logs)

    def rules_evaluated_after(self, moment: float) -> list[dict[str, Any]]:
        """Wait until every rule group has been evaluated after ``moment``; the groups."""

        def check() -> list[dict[str, Any]] | None:
            groups: list[dict[str, Any]] = httpx.get(
                f"{self.prometheus}/api/v1/rules", timeout=10
            ).json()["data"]["groups"]
            done = groups and all(
                datetime.fromisoformat(g["lastEvaluation"]).timestamp() > moment for g in groups
            )
            return groups if done else None

        return wait_until("every rule group to evaluate", check, SCRAPE_TIMEOUT_S, *self.logs)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    prometheus = shutil.which("prometheus")
    assert prometheus, "the prometheus binary is missing: install Debian's `prometheus` package"
    command = str(Path(sys.executable).with_name("router-service"))
    work = tmp_path_factory.mktemp("prometheus-live")
    agents_port, closed_port, router_port, prometheus_port = free_ports(4)
    (work / "routing.yaml").write_text(routing_file(agents_port, closed_port))
    env = {
        **clean_environment(),
        "DATABASE_URL": sqlite_url(work / "r.db"),
        "API_KEY": API_KEY,
        "ROUTING_CONFIG": str(work / "routing.yaml"),
        "RETRY_BASE_MS": "1",  # retries without slowing the test down
        "RETRY_CAP_MS": "5",
        "DLQ_BACKLOG_REFRESH_S": "0.5",
        "LOG_LEVEL": "WARNING",
    }
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES / "*.yml")],
        "scrape_configs": [
            {
                "job_name": "router",
                "static_configs": [{"targets": [f"127.0.0.1:{router_port}"]}],
            }
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))

    migrated = subprocess.run(
        [command, "migrate"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    agents_args = [command, "demo-agents", "--port", str(agents_port)]
    router_args = [command, "serve", "--port", str(router_port)]
    prometheus_args = [
        prometheus,
        f"--config.file={work / 'prometheus.yml'}",
        f"--storage.tsdb.path={work / 'data'}",
        f"--web.listen-address=127.0.0.1:{prometheus_port}",
        "--log.level=warn",
    ]
    with (
        spawn("demo-agents", agents_args, work, env) as agents_log,
        spawn("router", router_args, work, env) as router_log,
        spawn("prometheus", prometheus_args, work, env) as prometheus_log,
    ):
        logs = (agents_log, router_log, prometheus_log)
        wait_until("demo agents", answers(f"http://127.0.0.1:{agents_port}/health"), 30, *logs)
        wait_until("the router", answers(f"http://127.0.0.1:{router_port}/health"), 30, *logs)
        url = f"http://127.0.0.1:{prometheus_port}"
        wait_until("Prometheus", answers(f"{url}/-/ready"), START_TIMEOUT_S, *logs)
        yield Stack(f"http://127.0.0.1:{router_port}", url, logs)


def send(client: httpx.Client, phase: str, count: int) -> list[int]:
    statuses = []
    for index in range(count):
        body = {
            "log_id": f"{phase}-{index}",
            "sender_id": f"sender-{index % 7}",
            "payload": PAYLOADS[index % len(PAYLOADS)],
        }
        statuses.append(client.post("/route", json=body).status_code)
    return statuses


@pytest.fixture(scope="module")
def after_traffic(stack: Stack) -> list[dict[str, Any]]:
    """Traffic in two phases, so that every counter has a sample before and after the burst
    (rate() needs two); returns the rule groups once all were evaluated on the later scrapes."""
    headers = {"X-API-Key": API_KEY}
    with httpx.Client(base_url=stack.router, headers=headers, timeout=30) as client:
        # Phase 1 creates every labelled series (every kind, status, agent and outcome).
        assert set(send(client, "warm", len(PAYLOADS))) == {200, 202}
        stack.scraped_after(time.time())

        # Phase 2, the burst: 200 signals, client errors, and one replay of the dead letters.
        assert set(send(client, "burst", 200)) == {200, 202}
        assert client.post("/route", json={"payload": {}}).status_code == 422
        assert client.get("/logs", headers={"X-API-Key": "wrong"}).status_code == 401
        replay = client.post("/dlq/replay", json={"limit": 20})
        assert replay.status_code == 200, replay.text

    first = stack.scraped_after(time.time())
    second = stack.scraped_after(first)
    return stack.rules_evaluated_after(second)


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def rule_queries(kind: str) -> list[tuple[str, str]]:
    """(name, expr) of every rule that has ``kind``: "record" or "alert"."""
    return [
        (rule[kind], rule["expr"])
        for path in sorted(RULES.glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if kind in rule
    ]


def test_every_rule_evaluates_without_error(after_traffic: list[dict[str, Any]]) -> None:
    rules = [rule for group in after_traffic for rule in group["rules"]]

    assert len(rules) == len(rule_queries("record")) + len(rule_queries("alert"))
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []


def test_every_dashboard_query_returns_data(stack: Stack, after_traffic: object) -> None:
    """Alert-state panels included: they are ``... or vector(0)``, so a quiet alert is a 0."""
    failures = []
    for title, expr in dashboard_queries():
        answer = stack.query(expr)
        if answer["status"] != "success" or not answer["data"]["result"]:
            failures.append((title, expr, answer.get("error") or "no data"))

    assert len(dashboard_queries()) >= 40
    assert failures == []


def test_every_recording_rule_returns_data(stack: Stack, after_traffic: object) -> None:
    """Rate windows up to 6h still answer from a few seconds of samples (rate() needs two)."""
    failures = []
    for name, expr in rule_queries("record"):
        answer = stack.query(expr)
        if answer["status"] != "success" or not answer["data"]["result"]:
            failures.append((name, answer.get("error") or "no data"))

    assert failures == []


def test_alert_expressions_parse_and_the_quiet_ones_are_quiet(
    stack: Stack, after_traffic: object
) -> None:
    """Alerts are checked by promtool unit tests; here they must parse against real data.
    A few seconds of history cannot hold their `for:` durations, so none may be firing."""
    for name, expr in rule_queries("alert"):
        answer = stack.query(expr)
        assert answer["status"] == "success", (name, answer.get("error"))
    firing = stack.query('ALERTS{alertstate="firing"}')["data"]["result"]

    assert firing == []


def test_the_burst_shows_up_in_the_recorded_series(stack: Stack, after_traffic: object) -> None:
    def value(expr: str) -> float:
        (sample,) = stack.query(expr)["data"]["result"]
        return float(sample["value"][1])

    statuses = {
        sample["metric"]["status"]
        for sample in stack.query("signals_completed_total")["data"]["result"]
    }
    assert statuses == {"delivered", "partial", "dead_lettered"}
    assert 0 < value("router:signals_failed:ratio_rate1m") < 1
    assert value("router:latency_seconds:p50_1m") > 0
    assert value("sum(retry_attempts_total)") > 0
    assert value("router:objective_latency_p95_seconds") == 0.025
