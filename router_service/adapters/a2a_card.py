"""A2A agent cards: fetch each A2A agent's card and check it against the routing file.

The card is looked for next to the agent's endpoint first (several agents often share a host,
each under its own path), then at the host's root: ``/.well-known/agent-card.json``, and for
0.3 agents also the older ``/.well-known/agent.json``. The card must offer a JSON-RPC interface
at the routing file's URL, in the routing file's protocol version.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from router_service.domain.routing import AgentProtocol, AgentSpec, redacted_url

_MAX_CARD_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CardCheck:
    agent: str
    url: str
    version: str  # the routing file's
    card_url: str | None  # where the card was found
    card_version: str | None
    problem: str | None  # None: the card matches

    @property
    def ok(self) -> bool:
        return self.problem is None


def card_urls(url: str, version: str) -> list[str]:
    parts = urlsplit(url)
    names = ["agent-card.json"] + (["agent.json"] if version == "0.3" else [])
    found = []
    for name in names:
        found.append(url.rstrip("/") + f"/.well-known/{name}")
        found.append(urlunsplit((parts.scheme, parts.netloc, f"/.well-known/{name}", "", "")))
    return found


def _same(a: object, b: str) -> bool:
    return isinstance(a, str) and a.rstrip("/") == b.rstrip("/")


def check_card(spec: AgentSpec, card: Any) -> tuple[str | None, str | None]:
    """(the card's protocol version, the problem or None) for one agent."""
    version = spec.a2a_version or "1.0"
    if not isinstance(card, dict):
        return None, "the card is not a JSON object"
    interfaces = card.get("supportedInterfaces")
    if isinstance(interfaces, list):  # 1.0
        jsonrpc = [
            i
            for i in interfaces
            if isinstance(i, dict) and str(i.get("protocolBinding", "")).upper() == "JSONRPC"
        ]
        here = [i for i in jsonrpc if _same(i.get("url"), spec.url)]
        if not here:
            return _first_version(jsonrpc), f"no JSONRPC interface at {spec.shown_url}"
        versions = [str(i.get("protocolVersion", "")) for i in here]
        if not any(v == version or v.startswith(version + ".") for v in versions):
            return versions[0], f"the card offers version {', '.join(versions)}, not {version}"
        return version, None
    card_version = str(card.get("protocolVersion", ""))  # 0.3
    # The main url speaks preferredTransport (JSONRPC when absent); the others say theirs.
    urls = [card.get("url")] if str(card.get("preferredTransport", "JSONRPC")) == "JSONRPC" else []
    for extra in card.get("additionalInterfaces") or []:
        if isinstance(extra, dict) and str(extra.get("transport", "")).upper() == "JSONRPC":
            urls.append(extra.get("url"))
    if not any(_same(u, spec.url) for u in urls):
        return card_version or None, f"the card does not serve JSON-RPC at {spec.shown_url}"
    if not (card_version == version or card_version.startswith(version + ".")):
        return card_version or None, f"the card says version {card_version or '?'}, not {version}"
    return card_version, None


def _first_version(interfaces: Iterable[dict[str, Any]]) -> str | None:
    for interface in interfaces:
        return str(interface.get("protocolVersion", "")) or None
    return None


def _fetch(url: str, timeout_s: float) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - http(s) only
        return json.loads(response.read(_MAX_CARD_BYTES + 1)[:_MAX_CARD_BYTES])


def check_agent(spec: AgentSpec, timeout_s: float = 5.0) -> CardCheck:
    """Find and check one A2A agent's card (blocking: meant for the CLI, off the hot path)."""
    version = spec.a2a_version or "1.0"
    last_error = "no card found"
    for url in card_urls(spec.url, version):
        try:
            card = _fetch(url, timeout_s)
        except urllib.error.HTTPError as exc:
            last_error = f"HTTP {exc.code} at {redacted_url(url)}"
            continue
        except (OSError, ValueError, RecursionError) as exc:  # a card nested past the parser
            last_error = f"cannot fetch {redacted_url(url)}: {exc}"
            continue
        card_version, problem = check_card(spec, card)
        shown = redacted_url(url)
        return CardCheck(spec.name, spec.shown_url, version, shown, card_version, problem)
    return CardCheck(spec.name, spec.shown_url, version, None, None, last_error)


async def check_agents(agents: Iterable[AgentSpec], timeout_s: float = 5.0) -> list[CardCheck]:
    """Every A2A agent's card, fetched concurrently."""
    a2a = [a for a in agents if a.protocol is AgentProtocol.A2A]
    return list(await asyncio.gather(*(asyncio.to_thread(check_agent, a, timeout_s) for a in a2a)))
