"""The `router-service` command as a user runs it: real processes, real databases."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.db import PG_ADMIN, drop_database, query, sqlite_url
from tests.support.processes import BIN, ROOT


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"API_KEY", "API_KEYS", "DATABASE_URL"}}
    return subprocess.run(
        [str(BIN / "router-service"), *args],
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_serve_refuses_to_start_without_a_key(tmp_path: Path) -> None:
    result = run("serve", "--port", "1", env={"DATABASE_URL": sqlite_url(tmp_path / "r.db")})
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "API_KEY" in line


def test_serve_refuses_an_open_files_limit_that_leaves_clients_next_to_nothing(
    tmp_path: Path,
) -> None:
    """GLOBAL_CONCURRENCY close to the limit on open files left clients one connection in all
    (the second client got 503 ``too_many_connections``), and the server said nothing."""

    env = {
        **{k: v for k, v in os.environ.items() if k not in {"API_KEYS", "DATABASE_URL"}},
        "API_KEY": "k",
        "DATABASE_URL": sqlite_url(tmp_path / "r.db"),
        "GLOBAL_CONCURRENCY": "950",
    }
    # prlimit (util-linux) sets the hard limit too, so serve cannot raise the soft one.
    result = subprocess.run(
        ["prlimit", "--nofile=1024:1024", str(BIN / "router-service"), "serve", "--port", "1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "the open-files limit (1024) leaves 0 connections for clients" in line
    assert "GLOBAL_CONCURRENCY" in line


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_port_another_server_holds_says_so_in_one_line(
    tmp_path: Path, workers: str
) -> None:
    """The ready line was printed (the other server answered the readiness probe) before the
    bind failed; with two workers the only word was a JSON line on stdout."""
    url = sqlite_url(tmp_path / "r.db")
    env = {"API_KEY": "k", "DATABASE_URL": url, "STARTUP_DB_WAIT_S": "0"}
    assert run("migrate", env=env).returncode == 0
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        result = run("serve", "--host", "127.0.0.1", "--port", port, "--workers", workers, env=env)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line == f"error: cannot listen on http://127.0.0.1:{port}: Address already in use"
    assert "router-service ready" not in result.stdout + result.stderr


def test_serve_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    env = {"API_KEY": "k", "DATABASE_URL": sqlite_url(tmp_path / "r.db"), "STARTUP_DB_WAIT_S": "0"}
    result = run("serve", "--port", "1", env=env)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "router-service migrate" in line


def test_serve_refuses_a_bad_routing_file(tmp_path: Path) -> None:
    bad = tmp_path / "routing.yaml"
    bad.write_text("agents:\n  - {name: a, url: 'ftp://x'}\nroutes:\n  default: {agents: [a]}\n")
    env = {
        "API_KEY": "k",
        "ROUTING_CONFIG": str(bad),
        "DATABASE_URL": sqlite_url(tmp_path / "r.db"),
    }
    result = run("serve", "--port", "1", env=env)
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "agents[0].url" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read routing file"),
        ("", "the file is empty"),
        ("agents: [\n", "invalid YAML"),
        (
            "agents:\n  - {name: a, url: 'ftp://x'}\nroutes:\n  default: {agents: [a]}\n",
            "agents[0].url",
        ),
    ],
    ids=["missing", "empty", "invalid-yaml", "invalid-file"],
)
def test_serve_refuses_a_bad_shadow_routing_file_like_a_bad_routing_file(
    tmp_path: Path, content: str | None, message: str
) -> None:
    shadow = tmp_path / "candidate.yaml"
    if content is not None:
        shadow.write_text(content)
    url = sqlite_url(tmp_path / "r.db")
    assert run("migrate", env={"DATABASE_URL": url}).returncode == 0
    env = {"API_KEY": "k", "SHADOW_ROUTING_CONFIG": str(shadow), "DATABASE_URL": url}
    result = run("serve", "--port", "1", env=env)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {shadow}: "), line
    assert message in line


def test_check_config_names_file_location_and_problem(tmp_path: Path) -> None:
    bad = tmp_path / "routing.yaml"
    bad.write_text(
        "agents:\n  - {name: a, url: 'http://127.0.0.1:1/a'}\n"
        "rules:\n  - {id: r1, kind: k, when: {regexp: x}}\n"
        "routes:\n  default: {agents: [a]}\n"
    )
    result = run("check-config", str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "rules[0].when" in result.stderr
    assert "line 4" in result.stderr
    good = run("check-config", str(ROOT / "router_service/config/routing.yaml"))
    assert good.returncode == 0
    assert "ok" in good.stdout


def test_bad_files_and_payloads_get_one_error_line_not_a_traceback(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"  # JSON is YAML: a routing file too
    deep.write_text("[" * 5000 + "]" * 5000)
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys:\n  - {name: a, key: " + "[" * 3000 + "}\n")
    routing = str(ROOT / "router_service/config/routing.yaml")
    env = {"ROUTING_CONFIG": routing}
    cases = [
        (["explain", f"@{tmp_path / 'missing.json'}"], env, "cannot read"),
        (["explain", f"@{tmp_path}"], env, "cannot read"),
        (["explain", f"@{deep}"], env, "nested too deep"),
        (["explain", '{"sender_id": "s", "payload": {}, "mode": [1]}'], env, "mode must be one of"),
        (["check-config", str(deep)], {}, "nested too deep"),
        (["check-config", routing], {"API_KEYS_FILE": str(keys)}, None),
    ]
    for args, extra, message in cases:
        result = run(*args, env=extra)
        assert "Traceback" not in result.stderr, args
        if message is None:
            assert result.returncode == 0, result.stderr
            continue
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
    served = run(
        "serve",
        "--port",
        "1",
        env={"API_KEYS_FILE": str(keys), "DATABASE_URL": sqlite_url(tmp_path / "r.db")},
    )
    assert served.returncode == 2
    assert "Traceback" not in served.stderr
    assert "cannot read the keys file: nested too deep" in served.stderr


@pytest.mark.parametrize("command", [["migrate"], ["alembic"]])
def test_migrate_creates_a_missing_postgres_database_and_says_so(command: list[str]) -> None:
    name = f"router_new_{secrets.token_hex(4)}"
    host = PG_ADMIN.split("//", 1)[1].split("/", 1)[0]
    # The seed's spelling, with the psycopg2 driver name; an async driver is used underneath.
    url = f"postgresql+psycopg2://{host}/{name}"
    try:
        if command == ["alembic"]:
            result = subprocess.run(
                [str(BIN / "alembic"), "upgrade", "head"],
                env={**os.environ, "DATABASE_URL": url},
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        else:
            result = run("migrate", env={"DATABASE_URL": url})
        assert result.returncode == 0, result.stderr
        created = [line for line in result.stdout.splitlines() if "created database" in line]
        assert len(created) == 1
        assert name in created[0]
        tables = query(
            f"postgresql://{host}/{name}",
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
            "ORDER BY table_name",
        )
        assert [t["table_name"] for t in tables] == [
            "alembic_version",
            "dead_letters",
            "idempotency_keys",
            "replay_attempts",
            "replay_jobs",
            "signal_leases",
            "signals",
        ]
        again = run("migrate", env={"DATABASE_URL": url})
        assert again.returncode == 0
        assert "created database" not in again.stdout
    finally:
        drop_database(name)


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "router_service", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    for command in ("serve", "migrate", "replay-dlq", "check-config", "demo-agents", "load"):
        assert command in result.stdout


def test_migrate_waits_then_gives_up_in_one_line_when_the_database_never_comes() -> None:
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:9/routerdb", "STARTUP_DB_WAIT_S": "1"}
    result = run("migrate", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert any(line.startswith("waiting for the database") for line in lines)
    assert lines[-1].startswith("error: cannot reach the database after waiting 1 s")


@pytest.mark.parametrize(
    ("days", "message"),
    [
        ("nan", "'nan' is not a finite number of days"),
        ("inf", "is not in the range 0<=x<=36500"),
        ("1e9", "is not in the range 0<=x<=36500"),
        ("-1", "is not in the range 0<=x<=36500"),
    ],
)
def test_prune_refuses_a_retention_that_is_not_a_number_of_days(
    tmp_path: Path, days: str, message: str
) -> None:
    """nan, inf and 1e9 days were tracebacks (ValueError, OverflowError), exit 1."""
    env = {"API_KEY": "k", "DATABASE_URL": sqlite_url(tmp_path / "r.db")}
    result = run("prune", "--older-than-days", days, env=env)
    assert result.returncode == 2  # click's usage error
    assert message in result.stderr
    assert "Traceback" not in result.stderr
