"""``router-service explain``: the decision trace for one payload, as a tree or as JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.tree import Tree

from router_service.config.routing_source import read_version
from router_service.domain.errors import RouterError
from router_service.domain.routing import Mode
from router_service.service.explain import explain_payload

# Wide when not a terminal: a trace line cut at 80 columns loses the reason.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)


def read_payload(text: str) -> tuple[dict[str, Any], Mode | None]:
    """The payload from JSON text, ``@file`` or ``-`` (stdin). A whole ``/route`` body (with
    ``sender_id`` and ``payload``) is accepted too: its payload and mode are used."""
    hint = "PAYLOAD_JSON"
    if text == "-":
        text = sys.stdin.read()
    elif text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(f"cannot read {text[1:]}: {exc}", param_hint=hint) from exc
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint=hint) from exc
    except RecursionError as exc:
        raise click.BadParameter("JSON nested too deep to read", param_hint=hint) from exc
    if not isinstance(value, dict):
        raise click.BadParameter("the payload must be a JSON object", param_hint=hint)
    if "sender_id" in value and isinstance(value.get("payload"), dict):
        mode = value.get("mode")
        if mode is None:
            return value["payload"], None
        modes = [m.value for m in Mode]
        if mode not in modes:  # as POST /route refuses it
            raise click.BadParameter(f"mode must be one of {', '.join(modes)}", param_hint=hint)
        return value["payload"], Mode(mode)
    return value, None


def render_tree(answer: dict[str, Any]) -> Tree:
    tree = Tree(
        f"[bold]{answer['kind']}[/] by rule [bold]{answer['rule']}[/]"
        f"  (routing {answer['routing_version']}, nothing sent)"
    )
    rules = tree.add("rules, in order (first match wins)")
    for rule in answer["rules"]:
        mark = "[green]WON[/]" if rule["won"] else ("matched, shadowed" if rule["matched"] else "-")
        branch = rules.add(f"{rule['id']} -> {rule['kind']}: {mark}")
        branch.add(rule["why"])
    if answer["rule"] == "default":
        rules.add("no rule matched: kind default")
    plan = tree.add(f"plan: mode {answer['plan']['mode']}")
    for agent in answer["plan"]["agents"]:
        circuit = f", circuit {agent['circuit']}" if "circuit" in agent else ""
        plan.add(f"{agent['name']} (timeout {agent['timeout_s']} s{circuit}) {agent['url']}")
    return tree


@click.command("explain")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="The routing file (default: ROUTING_CONFIG).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the trace as JSON.")
@click.argument("payload_json")
def explain_command(config_file: Path | None, as_json: bool, payload_json: str) -> None:
    """Explain how PAYLOAD_JSON would be routed: every rule, the winner, the plan.

    PAYLOAD_JSON is a JSON object (or @file, or - for stdin); a whole /route body works too.
    Nothing is sent and nothing is logged.
    """
    from router_service.cli import _settings

    payload, mode = read_payload(payload_json)
    settings = _settings()
    try:
        # Not gated on the file's tests: explain is how one finds out why a test fails.
        version = read_version(config_file or settings.routing_config)
    except RouterError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(2)
    answer = explain_payload(
        version, payload, mode, default_timeout_s=settings.agent_timeout_ms / 1000
    )
    if as_json:
        click.echo(json.dumps(answer, indent=2, ensure_ascii=False))
    else:
        out.print(render_tree(answer))
