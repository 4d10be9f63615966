"""The tools a run needs: nginx and wrk from Debian (required), the peers (optional).

The required tools are installed with apt-get when missing (as root). The peers are installed
into ``tools/bench/.cache`` (gitignored): the Portkey gateway with npm, the LiteLLM proxy into its
own virtual environment with pip. A peer that cannot be installed is reported, never fatal.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
PORTKEY_PACKAGE = "@portkey-ai/gateway"
LITELLM_REQUIREMENT = "litellm[proxy]"
# Debian packages that provide each command; the first that installs wins.
DEBIAN_PACKAGES = {"nginx": ("nginx-light", "nginx"), "wrk": ("wrk",)}
# Debian's maintainer scripts start an installed service unless this file says no (exit 101).
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")


class SetupError(RuntimeError):
    """A required tool is missing and could not be installed."""


@dataclass(frozen=True, slots=True)
class Peer:
    """An installed peer (``entry`` is what to run), or the reason it is not available."""

    name: str
    entry: Path | None
    version: str = ""
    reason: str = ""


def _run(args: list[str], timeout_s: float, env: dict[str, str] | None = None) -> str | None:
    """None on success, else the last line of the output as the reason."""
    try:
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            env={**os.environ, **(env or {})},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{args[0]}: {exc}"
    if done.returncode == 0:
        return None
    lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    return lines[-1] if lines else f"{args[0]} exited with {done.returncode}"


def _apt_install(package: str) -> str | None:
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    args = ["apt-get", "install", "-y", "--no-install-recommends", package]
    if _run(args, 600, env) is None:
        return None
    # The package lists may be missing or stale on a fresh machine.
    _run(["apt-get", "update"], 600, env)
    return _run(args, 600, env)


def ensure_debian_tools() -> None:
    """Install nginx and wrk when missing; the system nginx service is never started."""
    missing = [command for command in DEBIAN_PACKAGES if shutil.which(command) is None]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        names = " ".join(DEBIAN_PACKAGES[command][0] for command in missing)
        raise SetupError(f"missing {', '.join(missing)}: run `apt-get install -y {names}` as root")
    own_policy = not POLICY_RC_D.exists()
    if own_policy:
        POLICY_RC_D.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC_D.chmod(0o755)
    try:
        for command in missing:
            reasons = []
            for package in DEBIAN_PACKAGES[command]:
                reason = _apt_install(package)
                if reason is None:
                    break
                reasons.append(f"{package}: {reason}")
            else:
                raise SetupError(f"could not install {command}: {'; '.join(reasons)}")
    finally:
        if own_policy:
            POLICY_RC_D.unlink(missing_ok=True)


def ensure_portkey(cache: Path = CACHE) -> Peer:
    """``npm install @portkey-ai/gateway`` into ``cache/portkey``; the entry is its start script."""
    prefix = cache / "portkey"
    package = prefix / "node_modules" / PORTKEY_PACKAGE
    entry = package / "build" / "start-server.js"
    if not entry.exists():
        if shutil.which("node") is None or shutil.which("npm") is None:
            return Peer("portkey", None, reason="node or npm not found")
        prefix.mkdir(parents=True, exist_ok=True)
        args = ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix)]
        reason = _run([*args, PORTKEY_PACKAGE], 900)
        if reason is not None or not entry.exists():
            return Peer("portkey", None, reason=f"npm install failed: {reason}")
    version = json.loads((package / "package.json").read_text()).get("version", "")
    return Peer("portkey", entry, version=str(version))


def ensure_litellm(cache: Path = CACHE) -> Peer:
    """``pip install 'litellm[proxy]'`` into ``cache/litellm-venv``; the entry is ``litellm``."""
    venv = cache / "litellm-venv"
    entry = venv / "bin" / "litellm"
    if not entry.exists():
        cache.mkdir(parents=True, exist_ok=True)
        base_python = getattr(sys, "_base_executable", sys.executable)
        reason = _run([base_python, "-m", "venv", str(venv)], 300)
        if reason is None:
            pip = [str(venv / "bin" / "pip"), "install", "--quiet"]
            reason = _run([*pip, LITELLM_REQUIREMENT], 1800)
        if reason is not None or not entry.exists():
            return Peer("litellm", None, reason=f"pip install failed: {reason}")
    python = str(venv / "bin" / "python")
    done = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return Peer("litellm", entry, version=done.stdout.strip())
