"""The peers: the Portkey gateway and the LiteLLM proxy, each calling the upstream as an
OpenAI-compatible provider. Installed by ``bench.install`` into ``tools/bench/.cache``."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from bench.install import Peer
from bench.targets import RequestSpec, Role, Target


class PortkeyTarget(Target):
    """The Portkey gateway on node, calling the upstream as a custom OpenAI host."""

    key = "portkey"
    label = "Portkey gateway"
    role: Role = "peer"
    open_loop = False

    def __init__(self, peer: Peer, openai_base: str) -> None:
        super().__init__()
        assert peer.entry is not None
        self.entry = peer.entry
        self.openai_base = openai_base
        self.label = f"Portkey gateway {peer.version}".strip()

    def command(self, workdir: Path) -> list[str]:
        node = shutil.which("node") or "node"
        return [node, str(self.entry), f"--port={self.port}", "--headless"]

    def cwd(self, workdir: Path) -> Path:
        return self.entry.parents[1]

    def environment(self) -> dict[str, str]:
        return {**os.environ, "NODE_ENV": "production"}

    @property
    def request(self) -> RequestSpec:
        headers = (
            ("x-portkey-provider", "openai"),
            ("x-portkey-custom-host", self.openai_base),
            ("Authorization", "Bearer sk-bench"),
        )
        return RequestSpec("/v1/chat/completions", "openai", headers)


class LiteLLMTarget(Target):
    """The LiteLLM proxy (one worker) with one model whose api_base is the upstream."""

    key = "litellm"
    label = "LiteLLM proxy"
    role: Role = "peer"
    open_loop = False
    start_timeout_s = 120.0

    def __init__(self, peer: Peer, openai_base: str) -> None:
        super().__init__()
        assert peer.entry is not None
        self.entry = peer.entry
        self.openai_base = openai_base
        self.label = f"LiteLLM proxy {peer.version}".strip()
        # The proxy refuses to start without a strong master key; requests then carry it.
        self.master_key = f"sk-{secrets.token_hex(16)}"

    def command(self, workdir: Path) -> list[str]:
        config = workdir / "litellm.yaml"
        config.write_text(
            "model_list:\n"
            "  - model_name: bench\n"
            "    litellm_params:\n"
            "      model: openai/bench\n"
            f"      api_base: {self.openai_base}\n"
            "      api_key: sk-bench\n"
            "general_settings:\n"
            f"  master_key: {self.master_key}\n"
            "litellm_settings:\n"
            "  telemetry: false\n"
            "  drop_params: true\n"
        )
        return [
            *(str(self.entry), "--config", str(config), "--host", "127.0.0.1"),
            *("--port", str(self.port), "--num_workers", "1"),
        ]

    def environment(self) -> dict[str, str]:
        # The cost map is otherwise fetched from the internet at start-up.
        quiet = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # its own venv only
        return {**env, **quiet, "LITELLM_TELEMETRY": "False"}

    @property
    def request(self) -> RequestSpec:
        headers = (("Authorization", f"Bearer {self.master_key}"),)
        return RequestSpec("/v1/chat/completions", "openai", headers)
