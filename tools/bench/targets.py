"""The systems under test, and the upstream they all call: start, wait until ready, stop.

Every process runs in its own process group on a loopback port, with its files in the run's
temporary directory. The load generator is pinned to CPU 0 and the system under test to CPU 1
(``taskset``), so neither steals the other's core; helpers (the upstream nginx, Postgres) are not
pinned. nginx never reads the system configuration: each instance gets its own ``-c`` file and
``-p`` prefix and runs with ``daemon off``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parents[2]  # the repository (this file is tools/bench/targets.py)
VENV_BIN = ROOT / ".venv" / "bin"
API_KEY = "bench-key"
LOAD_CPU = "0"
TARGET_CPU = "1"
UPSTREAM_PATH = "/agent"
OPENAI_ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "ok"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    },
    separators=(",", ":"),
)

Role = Literal["floor", "router", "peer"]
BodyKind = Literal["router", "openai"]


class TargetError(RuntimeError):
    """A target did not start or did not answer its probe."""


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """What the load generator sends to a target (see post.lua)."""

    path: str
    body: BodyKind = "router"
    headers: tuple[tuple[str, str], ...] = ()

    def probe_body(self) -> bytes:
        if self.body == "openai":
            message = {"role": "user", "content": "probe"}
            return json.dumps({"model": "bench", "messages": [message]}).encode()
        return json.dumps({"sender_id": "bench-probe", "payload": {"probe": time.time()}}).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(args: list[str], cpu: str | None) -> list[str]:
    """``args`` run on ``cpu`` when taskset exists (it execs, so the pid is the program's)."""
    if cpu is None or shutil.which("taskset") is None:
        return args
    return ["taskset", "-c", cpu, *args]


class Process:
    """A child in its own process group; ``stop`` ends the group (nginx and uvicorn fork)."""

    def __init__(
        self, args: list[str], *, env: dict[str, str], cwd: Path, log: Path, quiet: bool = False
    ) -> None:
        self.log = log
        with log.open("ab") as sink:
            self.popen = subprocess.Popen(
                args,
                env=env,
                cwd=cwd,
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL if quiet else sink,
                stderr=sink,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])

    def stop(self) -> None:
        if not self.alive():
            return
        os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)


def _wait_listening(port: int, process: Process, timeout_s: float) -> None:
    give_up = time.monotonic() + timeout_s
    while time.monotonic() < give_up:
        if not process.alive():
            raise TargetError(f"exited with {process.popen.returncode}: {process.tail()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)  # polling a port for a process start: no event to wait on
    raise TargetError(f"nothing listened on port {port} within {timeout_s:g} s")


def http(
    method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """One request on loopback; an HTTP error status is an answer, not an exception."""
    if not url.startswith("http://127.0.0.1:"):
        raise ValueError(f"the benchmark only talks to loopback: {url}")
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return int(answer.status), bytes(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


# --------------------------------------------------------------------------- nginx


def nginx_config(workdir: Path, name: str, port: int, upstream_port: int | None) -> Path:
    """One worker on one loopback port: a static JSON answer, or a keep-alive reverse proxy."""
    prefix = workdir / name
    prefix.mkdir(parents=True, exist_ok=True)
    if upstream_port is None:
        json_type = "default_type application/json;"
        locations = f"""
    location / {{ {json_type} return 200 '{{"ok":true}}'; }}
    location ~ /chat/completions$ {{ {json_type} return 200 '{OPENAI_ANSWER}'; }}"""
        upstream = ""
    else:
        upstream = f"upstream agent {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}"
        locations = """
    location / {
      proxy_pass http://agent;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }"""
    text = f"""# generated by tools/bench/targets.py for one run
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {prefix}/client_body;
  proxy_temp_path {prefix}/proxy;
  fastcgi_temp_path {prefix}/fastcgi;
  uwsgi_temp_path {prefix}/uwsgi;
  scgi_temp_path {prefix}/scgi;
  keepalive_requests 10000000;
  keepalive_timeout 120s;
  {upstream}
  server {{
    listen 127.0.0.1:{port};{locations}
  }}
}}
"""
    path = prefix / "nginx.conf"
    path.write_text(text)
    return path


def nginx_command(workdir: Path, name: str, port: int, upstream_port: int | None) -> list[str]:
    config = nginx_config(workdir, name, port, upstream_port)
    nginx = shutil.which("nginx") or "nginx"
    prefix = config.parent
    return [nginx, "-p", f"{prefix}/", "-c", str(config), "-e", str(prefix / "error.log")]


class Upstream:
    """The benchmark agent every target calls: nginx answering at once, not pinned."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        args = nginx_command(workdir, "upstream", self.port, None)
        self.process = Process(
            args, env=dict(os.environ), cwd=workdir, log=workdir / "upstream.log"
        )
        _wait_listening(self.port, self.process, 10)

    @property
    def agent_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{UPSTREAM_PATH}"

    @property
    def openai_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> None:
        self.process.stop()


# --------------------------------------------------------------------------- targets


class Target:
    """One system under test. ``start`` raises TargetError with the reason it could not."""

    key: str = ""
    label: str = ""
    role: Role = "floor"
    open_loop: bool = True
    cpu: str | None = TARGET_CPU
    start_timeout_s: float = 30.0
    quiet: bool = False  # drop stdout (the router's one JSON line per signal)

    def __init__(self) -> None:
        self.port = 0
        self.process: Process | None = None

    @property
    def request(self) -> RequestSpec:
        return RequestSpec("/route")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "target not started"
        return self.process.pid

    def command(self, workdir: Path) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def cwd(self, workdir: Path) -> Path:
        return workdir

    def probe(self) -> tuple[int, bytes]:
        spec = self.request
        headers = {"Content-Type": "application/json", **dict(spec.headers)}
        return http("POST", self.base_url + spec.path, spec.probe_body(), headers)

    def start(self, workdir: Path) -> None:
        self.port = free_port()
        log = workdir / f"{self.key}.log"
        args = pinned(self.command(workdir), self.cpu)
        self.process = Process(
            args, env=self.environment(), cwd=self.cwd(workdir), log=log, quiet=self.quiet
        )
        try:
            _wait_listening(self.port, self.process, self.start_timeout_s)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        give_up = time.monotonic() + self.start_timeout_s
        status, body = 0, b""
        while time.monotonic() < give_up:
            try:
                status, body = self.probe()
            except OSError as exc:
                status, body = 0, str(exc).encode()
            if 200 <= status < 300:
                return
            time.sleep(0.2)
        detail = body[:200].decode(errors="replace")
        raise TargetError(f"probe answered {status}: {detail}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


class NginxTarget(Target):
    """nginx answering directly (``upstream_port`` None) or proxying to the upstream."""

    def __init__(self, upstream_port: int | None) -> None:
        super().__init__()
        self.upstream_port = upstream_port
        self.key = "nginx-direct" if upstream_port is None else "nginx-proxy"
        self.label = "nginx (direct)" if upstream_port is None else "nginx (reverse proxy)"

    def command(self, workdir: Path) -> list[str]:
        return nginx_command(workdir, self.key, self.port, self.upstream_port)


class RouterTarget(Target):
    """``router-service serve`` on a migrated database; one worker pinned, or N unpinned."""

    role: Role = "router"
    quiet = True

    def __init__(
        self, key: str, label: str, database_url: str, routing_file: Path, *, workers: int = 1,
        log_level: str = "INFO",
    ) -> None:  # fmt: skip
        super().__init__()
        self.key, self.label = key, label
        self.database_url = database_url
        self.routing_file = routing_file
        self.workers = workers
        self.log_level = log_level
        self.cpu = TARGET_CPU if workers == 1 else None

    def command(self, workdir: Path) -> list[str]:
        serve = [str(VENV_BIN / "router-service"), "serve", "--host", "127.0.0.1"]
        return [*serve, "--port", str(self.port), "--workers", str(self.workers)]

    def environment(self) -> dict[str, str]:
        return router_environment(self.database_url, self.routing_file, self.log_level)

    def probe(self) -> tuple[int, bytes]:
        return http("GET", self.base_url + "/health")

    @property
    def request(self) -> RequestSpec:
        return RequestSpec("/route", "router", (("X-API-Key", API_KEY),))


def router_environment(database_url: str, routing_file: Path, log_level: str) -> dict[str, str]:
    """The router's settings, and none inherited from the caller's shell."""
    skip = {"DATABASE_URL", "API_KEY", "API_KEYS", "ROUTING_CONFIG", "LOG_LEVEL"}
    env = {k: v for k, v in os.environ.items() if k.upper() not in skip}
    env.update(
        DATABASE_URL=database_url,
        API_KEY=API_KEY,
        ROUTING_CONFIG=str(routing_file),
        LOG_LEVEL=log_level,
    )
    return env


def routing_yaml(agent_url: str) -> str:
    """No rules: every signal is kind ``default``, sent to the one agent ``bench``."""
    return (
        "# generated by bench: every signal goes to the benchmark upstream\n"
        "agents:\n"
        f"  - {{name: bench, url: '{agent_url}'}}\n"
        "rules: []\n"
        "routes:\n"
        "  default: {agents: [bench], mode: first_success}\n"
    )
