"""The newcomer's first hour, as real processes: the ready line says what the server runs on,
and under `make dev` an edited routing file takes effect without a restart."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.db import sqlite_url
from tests.support.polling import wait_for
from tests.support.ports import free_port, free_ports
from tests.support.processes import BIN, start, stop
from tests.support.routing_files import shipped_routing_on

HEADERS = {"X-API-Key": "dev-key"}
ZEBRA_RULE = "  - id: zebra-rule\n    kind: policy\n    when: {keywords: [zebra]}\n"


def sha12(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def wait_in_output(output: Path, found: Callable[[list[str]], Any], timeout_s: float = 30) -> Any:
    """Poll the process's output until ``found(lines)`` is truthy; return it."""
    return wait_for(
        lambda: found(output.read_text(errors="replace").splitlines()),
        timeout_s,
        what=f"what {output.name} should show",
        detail=output.read_text,
    )


def ready(lines: list[str]) -> str | None:
    return next((line for line in lines if line.startswith("router-service ready on ")), None)


def events(lines: list[str], name: str) -> list[dict[str, Any]]:
    found = []
    for line in lines:
        if line.startswith("{") and f'"{name}"' in line:
            record = json.loads(line)
            if record.get("event") == name:
                found.append(record)
    return found


def reloads(base_url: str) -> dict[str, float]:
    """``routing_reloads_total`` by outcome, the outcomes counted so far."""
    text = httpx.get(f"{base_url}/metrics", headers=HEADERS, timeout=30).text
    counted = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "routing_reloads_total":
                counted[sample.labels["outcome"]] = sample.value
    return {outcome: value for outcome, value in counted.items() if value}


def route(base_url: str, message: str) -> dict[str, Any]:
    body = {"sender_id": "newcomer", "payload": {"message": message}}
    response = httpx.post(f"{base_url}/route", json=body, headers=HEADERS, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_make_dev_reloads_an_edited_routing_file_and_keeps_it_on_a_bad_edit(
    tmp_path: Path,
) -> None:
    agents_port, router_port = free_ports(2)
    routing = shipped_routing_on(agents_port, tmp_path)
    env = {
        "PORT": str(router_port),
        "DEMO_AGENTS_PORT": str(agents_port),
        "ROUTING_CONFIG": str(routing),
        "DATABASE_URL": sqlite_url(tmp_path / "dev.db"),
    }
    output = tmp_path / "dev.out"
    base_url = f"http://127.0.0.1:{router_port}"
    with output.open("wb") as sink:
        dev = start(["make", "--no-print-directory", "dev"], env, router_port, sink, sink)
        try:
            line = wait_in_output(output, ready)
            assert f"on {base_url};" in line
            assert f"database: sqlite {tmp_path}/dev.db;" in line
            assert f"routing: {routing} version {sha12(routing)} (6 agents)" in line
            assert route(base_url, "a zebra crossing")["kind"] == "default"

            routing.write_text(routing.read_text().replace("rules:\n", "rules:\n" + ZEBRA_RULE))
            edited = sha12(routing)
            wait_in_output(output, lambda lines: events(lines, "routing.reloaded"))
            [reloaded] = events(output.read_text().splitlines(), "routing.reloaded")
            assert reloaded["version"] == edited
            assert reloaded["file"] == str(routing)
            answer = route(base_url, "a zebra crossing")
            assert (answer["kind"], answer["rule"]) == ("policy", "zebra-rule")
            health = httpx.get(f"{base_url}/health", timeout=30).json()
            assert health["routing"]["version"] == edited
            # The watcher's reloads are reported as SIGHUP's and the API's are: the metric and
            # /health's last reload (both stayed empty for them).
            last = health["routing"]["last_reload"]
            assert (last["outcome"], last["trigger"], last["version"]) == (
                "reloaded",
                "watch",
                edited,
            )
            assert reloads(base_url) == {"reloaded": 1.0}

            routing.write_text(routing.read_text().replace("[zebra]", "[zebra"))
            failed = wait_in_output(output, lambda lines: events(lines, "routing.reload_failed"))
            assert failed[0]["kept_version"] == edited
            assert str(routing) in failed[0]["error"]
            assert route(base_url, "a zebra crossing")["rule"] == "zebra-rule"
            last = httpx.get(f"{base_url}/health", timeout=30).json()["routing"]["last_reload"]
            assert (last["outcome"], last["trigger"], last["version"]) == (
                "refused",
                "watch",
                edited,
            )
            assert str(routing) in last["error"]
            assert reloads(base_url) == {"reloaded": 1.0, "refused": 1.0}
        finally:
            stop(dev)
    lines = output.read_text().splitlines()
    assert len(events(lines, "routing.reloaded")) == 1
    assert events(lines, "routing.reload") == []  # one line a reload: the watcher's own


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_ready_line_names_the_database_without_its_password(
    backend: str, tmp_path: Path, migrated: Callable[[str], str]
) -> None:
    url = migrated(backend)
    name = url.rsplit("/", 1)[1]
    if backend == "postgres":
        parts = urlsplit(url)
        # Trust authentication ignores the password: it is here only to be kept out of sight.
        url = parts._replace(
            netloc=f"{parts.username}:s3cret-pw@{parts.netloc.split('@')[-1]}"
        ).geturl()
        port_part = f":{parts.port}" if parts.port else ""
        shown = f"postgresql {parts.hostname}{port_part}/{name}"
    else:
        shown = f"sqlite {url.removeprefix('sqlite:///')}"
    port = free_port()
    env = {"API_KEY": "k", "DATABASE_URL": url}
    output = tmp_path / "serve.out"
    with output.open("wb") as sink:
        server = start(
            [str(BIN / "router-service"), "serve", "--port", str(port)], env, port, sink, sink
        )
        try:
            line = wait_in_output(output, ready)
        finally:
            stop(server)
    assert f"database: {shown};" in line
    assert "s3cret-pw" not in output.read_text()
