"""The deployment files: Prometheus config, rules and their unit tests (promtool), the generated
Grafana dashboard, the compose file (compose-spec schema) and the compose routing file.

promtool comes with Debian's ``prometheus`` package; without it these tests fail, never skip.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.processes import ROOT

DEPLOY = ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
RULES = PROMETHEUS / "rules"
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "router.json"
GENERATOR = DEPLOY / "grafana" / "build_dashboard.py"

# The objectives of the service: p50 <= 5 ms, p95 <= 25 ms, 99.9 % available.
OBJECTIVES = {
    "router:objective_latency_p50_seconds": 0.005,
    "router:objective_latency_p95_seconds": 0.025,
    "router:objective_availability_ratio": 0.999,
}


def promtool(*args: str) -> str:
    executable = shutil.which("promtool")
    assert executable, "promtool is missing: install Debian's `prometheus` package"
    done = subprocess.run(
        [executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules(kind: str) -> Iterator[dict[str, Any]]:
    """Every rule of the rules files that has ``kind`` ("record" or "alert")."""
    for path in sorted(RULES.glob("*.yml")):
        for group in load_yaml(path)["groups"]:
            yield from (rule for rule in group["rules"] if kind in rule)


def alert_names() -> set[str]:
    return {rule["alert"] for rule in rules("alert")}


def recorded_objectives() -> dict[str, float]:
    groups = load_yaml(RULES / "recording.yml")["groups"]
    (objectives,) = (g for g in groups if g["name"] == "router-objectives")
    found = {}
    for rule in objectives["rules"]:
        constant = re.fullmatch(r"vector\(([0-9.]+)\)", rule["expr"])
        if constant:
            found[rule["record"]] = float(constant.group(1))
    return found


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_config_and_its_rule_files_are_valid() -> None:
    output = promtool("check", "config", "deploy/prometheus/prometheus.yml")

    assert "2 rule files found" in output


def test_rule_files_are_valid() -> None:
    promtool("check", "rules", *(str(p) for p in sorted(RULES.glob("*.yml"))))


def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    output = promtool("test", "rules", *(str(p) for p in RULE_TESTS))

    assert output.count("SUCCESS") == len(RULE_TESTS), output


def test_every_alert_has_unit_tests_that_fire_it_and_keep_it_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in load_yaml(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else quiet).add(check["alertname"])

    assert alert_names() == {
        "RouterDown",
        "RouterLatencyP50High",
        "RouterLatencyP95High",
        "RouterErrorBudgetBurn",
        "RouterDLQBacklogGrowing",
        "RouterDatabaseUnhealthy",
        "RouterOutcomeSuperseded",
    }
    assert alert_names() - fired == set()
    assert alert_names() - quiet == set()


def test_objectives_are_recorded_once_with_the_documented_values() -> None:
    recorded = recorded_objectives()

    assert {name: recorded.get(name) for name in OBJECTIVES} == OBJECTIVES
    records = [rule["record"] for rule in rules("record")]
    assert len(records) == len(set(records))


def test_alerts_compare_against_objective_series_not_numbers() -> None:
    for rule in rules("alert"):
        # Range selectors like [5m] and quoted label values are not thresholds.
        expr = re.sub(r'\[[^\]]*\]|"[^"]*"', "", rule["expr"])
        numbers = set(re.findall(r"(?<![\w:.])\d+(?:\.\d+)?(?![\w.])", expr))
        assert numbers <= {"0"}, f"{rule['alert']} has literal thresholds {numbers}"


# --------------------------------------------------------------------------- Grafana


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_dashboard", GENERATOR)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is being made.
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel but rows, which only group the others and hold no query."""
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def test_committed_dashboard_is_what_the_generator_writes() -> None:
    generated = load_generator().render()

    assert DASHBOARD.read_text() == generated, "run python deploy/grafana/build_dashboard.py"


def test_dashboard_panels_have_unique_ids_and_do_not_overlap(dashboard: dict[str, Any]) -> None:
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    cells = [
        (x, y)
        for panel in panels
        for x in range(panel["gridPos"]["x"], panel["gridPos"]["x"] + panel["gridPos"]["w"])
        for y in range(panel["gridPos"]["y"], panel["gridPos"]["y"] + panel["gridPos"]["h"])
    ]

    assert len(ids) == len(set(ids))
    assert len(cells) == len(set(cells))
    assert all(panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24 for panel in panels)


def test_every_panel_queries_the_prometheus_datasource(dashboard: dict[str, Any]) -> None:
    panels = query_panels(dashboard)

    assert len(panels) >= 20
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "prometheus", panel["title"]
            assert target["expr"].strip(), panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


def test_latency_panels_draw_both_objectives_as_thresholds(dashboard: dict[str, Any]) -> None:
    objectives = recorded_objectives()
    wanted = {
        objectives["router:objective_latency_p50_seconds"],
        objectives["router:objective_latency_p95_seconds"],
    }
    latency = [
        panel
        for panel in query_panels(dashboard)
        if any(
            re.search(r"router_latency_seconds|router:latency_seconds", t["expr"])
            for t in panel["targets"]
        )
    ]

    assert wanted == {0.005, 0.025}
    assert len(latency) >= 4
    for panel in latency:
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert wanted <= {step["value"] for step in steps}, panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"] == "s", panel["title"]


def test_every_alert_has_a_state_panel(dashboard: dict[str, Any]) -> None:
    exprs = [target["expr"] for panel in query_panels(dashboard) for target in panel["targets"]]

    for name in alert_names():
        assert any(f'ALERTS{{alertname="{name}"' in expr for expr in exprs), name


# --------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(ROOT / "docker-compose.yml")
    return loaded


def test_compose_file_follows_the_compose_spec(compose: dict[str, Any]) -> None:
    schema = json.loads((DEPLOY / "compose-spec.schema.json").read_text())
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)

    errors = list(validator(schema, format_checker=validator.FORMAT_CHECKER).iter_errors(compose))

    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []


def test_compose_file_mounts_only_files_that_exist(compose: dict[str, Any]) -> None:
    sources = [
        volume.split(":", 1)[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if volume.startswith("./")
    ]

    assert sources
    assert [source for source in sources if not (ROOT / source).exists()] == []


def test_router_waits_for_a_healthy_database_and_reads_the_compose_routing_file(
    compose: dict[str, Any],
) -> None:
    router = compose["services"]["router"]

    assert router["depends_on"]["postgres"]["condition"] == "service_healthy"
    mounted = dict(volume.split(":")[:2] for volume in router["volumes"])
    assert mounted["./deploy/routing.compose.yaml"] == router["environment"]["ROUTING_CONFIG"]
    assert router["environment"]["DATABASE_URL"].endswith("@postgres:5432/routerdb")


def test_compose_routing_file_is_valid() -> None:
    command = Path(sys.executable).with_name("router-service")
    done = subprocess.run(
        [str(command), "check-config", "deploy/routing.compose.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_routing_file_is_the_default_with_agents_on_the_compose_network() -> None:
    default = (ROOT / "router_service" / "config" / "routing.yaml").read_text()
    compose = yaml.safe_load((DEPLOY / "routing.compose.yaml").read_text())

    expected = yaml.safe_load(default.replace("http://127.0.0.1:9100/", "http://agents:9100/"))
    assert compose == expected
