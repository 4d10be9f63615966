"""A2A agent cards: fetch each A2A agent's card and check it against the routing file.

The card is looked for next to the agent's endpoint first (several agents often share a host,
each under its own path), then at the host's root: ``/.well-known/agent-card.json``, and for
0.3 agents also the older ``/.well-known/agent.json``. The card must offer a JSON-RPC interface
at the routing file's URL, in the routing file's protocol version.

The fetch is a ``GET`` over the agent client's own HTTP/1.1 connection code, so it reaches the
agent as delivery does: credentials in the URL go in an ``Authorization: Basic`` header only,
redirects are not followed (a 3xx is the row's problem), the answer is capped at 1 MiB as it
arrives, and one deadline covers all of an agent's card URLs. Of an agent's failed URLs, the
row names the most telling failure (a 404 tells least). Text from the card is escaped and cut
before it reaches a row: a card must not be able to rewrite the terminal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import orjson

from router_service.adapters.connection_pool import ConnectionPool
from router_service.adapters.http1 import (
    ConnectionFailed,
    ResponseTooLarge,
    Target,
    parse_target,
)
from router_service.domain.routing import AgentProtocol, AgentSpec, redacted_url

_MAX_CARD_BYTES: Final = 1024 * 1024
_SHOWN_CHARS: Final = 64  # of one card-supplied string (a version, a Location) in a row
_GET_HEADERS: Final = b"Accept: application/json\r\nConnection: close\r\n\r\n"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}

# How much a failed card URL tells the operator; the row names the first of the highest rank.
_ABSENT: Final = 0  # 404 or 410: the card may simply live at another of the URLs
_UNREACHABLE: Final = 1  # no answer, another status, a redirect, the deadline
_UNUSABLE: Final = 2  # a 2xx that is not a card: over the cap, not JSON
_BROKEN: Final = 3  # the check itself failed on this agent


@dataclass(frozen=True, slots=True)
class CardCheck:
    agent: str
    url: str
    version: str  # the routing file's
    card_url: str | None  # where the card was found (redacted)
    card_version: str | None  # as printable text (``shown_text``)
    problem: str | None  # None: the card matches; card-supplied parts are printable text

    @property
    def ok(self) -> bool:
        return self.problem is None


class _NoCard(Exception):
    """One card URL gave no card; ``rank`` orders the failures of an agent's URLs."""

    def __init__(self, rank: int, message: str) -> None:
        super().__init__(message)
        self.rank = rank
        self.message = message


def shown_text(text: str, limit: int = _SHOWN_CHARS) -> str:
    """``text`` safe to print in a row: characters that are not printable (CR, ESC, bidi
    controls...) escaped as ``repr`` does (``\\r``, ``\\x1b``), backslashes doubled, and cut to
    ``limit`` characters (then ``...``)."""
    escaped = "".join(c if c.isprintable() and c != "\\" else repr(c)[1:-1] for c in text[:limit])
    return escaped + "..." if len(text) > limit else escaped


def card_urls(url: str, version: str) -> list[str]:
    """Where the card of the agent at ``url`` may be, in order: ``scheme://host:port/path``
    without the userinfo (credentials go in a header); the endpoint's query, if any, stays on
    the card URL beside the endpoint, after its path."""
    parts = urlsplit(url)
    origin = parts.netloc.rpartition("@")[2]
    names = ["agent-card.json"] + (["agent.json"] if version == "0.3" else [])
    found = []
    for name in names:
        beside = f"{parts.path.rstrip('/')}/.well-known/{name}"
        found.append(urlunsplit((parts.scheme, origin, beside, parts.query, "")))
        found.append(urlunsplit((parts.scheme, origin, f"/.well-known/{name}", "", "")))
    return found


def _endpoint(url: object) -> tuple[str, str, int | None, str] | None:
    """Scheme, host, port and path: what makes two URLs the same endpoint (not the userinfo,
    not the query)."""
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a card's "http://[" or "http://h:99999"
        return None
    scheme = parts.scheme.lower()
    return scheme, parts.hostname or "", port or _DEFAULT_PORTS.get(scheme), parts.path.rstrip("/")


def _same(a: object, b: str) -> bool:
    endpoint = _endpoint(a)
    return endpoint is not None and endpoint == _endpoint(b)


def _text(value: object) -> str:
    """A card's string field; anything else (a number, a list, null) counts as absent."""
    return value if isinstance(value, str) else ""


def _versions(versions: list[str]) -> str:
    shown = ", ".join(shown_text(v or "?") for v in versions[:3])
    return shown + (f" (and {len(versions) - 3} more)" if len(versions) > 3 else "")


def check_card(spec: AgentSpec, card: Any) -> tuple[str | None, str | None]:
    """(the card's protocol version, the problem or None) for one agent, as printable text.
    Any JSON is a card to judge here: a field of the wrong type is a mismatch, not an error."""
    version = spec.a2a_version or "1.0"
    if not isinstance(card, dict):
        return None, "the card is not a JSON object"
    interfaces = card.get("supportedInterfaces")
    if isinstance(interfaces, list):  # 1.0
        jsonrpc = [
            i
            for i in interfaces
            if isinstance(i, dict) and _text(i.get("protocolBinding")).upper() == "JSONRPC"
        ]
        here = [i for i in jsonrpc if _same(i.get("url"), spec.url)]
        if not here:
            first = _text(jsonrpc[0].get("protocolVersion")) if jsonrpc else ""
            return shown_text(first) or None, f"no JSONRPC interface at {spec.shown_url}"
        versions = [_text(i.get("protocolVersion")) for i in here]
        if not any(v == version or v.startswith(version + ".") for v in versions):
            problem = f"the card offers version {_versions(versions)}, not {version}"
            return shown_text(versions[0]) or None, problem
        return version, None
    card_version = _text(card.get("protocolVersion"))  # 0.3
    shown = shown_text(card_version) or None
    # The main url speaks preferredTransport (JSONRPC when absent); the others say theirs.
    preferred = _text(card.get("preferredTransport", "JSONRPC")).upper()
    urls = [card.get("url")] if preferred == "JSONRPC" else []
    extras = card.get("additionalInterfaces")
    for extra in extras if isinstance(extras, list) else []:
        if isinstance(extra, dict) and _text(extra.get("transport")).upper() == "JSONRPC":
            urls.append(extra.get("url"))
    if not any(_same(u, spec.url) for u in urls):
        return shown, f"the card does not serve JSON-RPC at {spec.shown_url}"
    if not (card_version == version or card_version.startswith(version + ".")):
        return shown, f"the card says version {shown or '?'}, not {version}"
    return shown, None


def _get(url: str, userinfo: str) -> tuple[Target, bytes]:
    """The target and request of a ``GET`` of ``url``, with ``userinfo`` (from the agent's URL)
    as delivery sends it: an ``Authorization: Basic`` header, never in the request line."""
    parts = urlsplit(url)
    netloc = f"{userinfo}@{parts.netloc}" if userinfo else parts.netloc
    target = parse_target(urlunsplit(parts._replace(netloc=netloc)), "GET")
    return target, target.head + _GET_HEADERS


async def _fetch(pool: ConnectionPool, url: str, userinfo: str, deadline: float) -> Any:
    """The card at ``url``, parsed; ``_NoCard`` says why there is none."""
    shown = redacted_url(url)
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0:
        raise TimeoutError
    target, request = _get(url, userinfo)
    try:
        response = await pool.exchange(target, request, remaining)
    except ResponseTooLarge as exc:
        if 200 <= exc.status < 300:
            raise _NoCard(_UNUSABLE, f"the card at {shown} is larger than 1 MiB") from exc
        raise _NoCard(_UNREACHABLE, f"HTTP {exc.status} at {shown}") from exc
    except TimeoutError:  # an OSError too, but the agent's deadline: its check ends here
        raise
    except (ConnectionFailed, OSError) as exc:  # refused, reset, DNS, TLS, an invalid answer
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise _NoCard(_UNREACHABLE, f"cannot fetch {shown}: {shown_text(reason, 200)}") from exc
    status = response.status
    if status in (404, 410):
        raise _NoCard(_ABSENT, f"HTTP {status} at {shown}")
    if 300 <= status < 400:
        location = response.headers.get(b"location", b"").decode("latin-1")
        try:
            where = shown_text(redacted_url(location), 200) if location else "nowhere"
        except ValueError:
            where = "an invalid URL"
        message = f"HTTP {status} at {shown}: redirects to {where} (redirects are not followed)"
        raise _NoCard(_UNREACHABLE, message)
    if not 200 <= status < 300:
        raise _NoCard(_UNREACHABLE, f"HTTP {status} at {shown}")
    try:
        return orjson.loads(response.body)
    except orjson.JSONDecodeError as exc:
        message = f"the card at {shown} is not JSON: {shown_text(str(exc), 120)}"
        raise _NoCard(_UNUSABLE, message) from exc


async def _check_agent(pool: ConnectionPool, spec: AgentSpec, timeout_s: float) -> CardCheck:
    """One agent's row: never raises (but for cancellation), and ends within ``timeout_s``."""
    version = spec.a2a_version or "1.0"
    failures: list[_NoCard] = []
    deadline = asyncio.get_running_loop().time() + timeout_s
    userinfo = ""
    try:
        userinfo = urlsplit(spec.url).netloc.rpartition("@")[0]
        for url in card_urls(spec.url, version):
            try:
                card = await _fetch(pool, url, userinfo, deadline)
            except _NoCard as failure:
                failures.append(failure)
                continue
            card_version, problem = check_card(spec, card)
            found = redacted_url(url)
            return CardCheck(spec.name, spec.shown_url, version, found, card_version, problem)
    except TimeoutError:
        message = f"no card within {timeout_s:g} s (all of the agent's card URLs together)"
        failures.append(_NoCard(_UNREACHABLE, message))
    except Exception as exc:  # one agent's surprise is its row, not the command's traceback
        reason = f"{type(exc).__name__}: {exc}"
        if ":" in userinfo:  # the message may quote the URL it failed on, password and all
            reason = reason.replace(userinfo, userinfo.partition(":")[0] + ":***")
        failures.append(_NoCard(_BROKEN, f"the check failed: {shown_text(reason, 200)}"))
    problem = max(failures, key=lambda f: f.rank).message if failures else "no card found"
    return CardCheck(spec.name, spec.shown_url, version, None, None, problem)


async def check_agents(agents: Iterable[AgentSpec], timeout_s: float = 10.0) -> list[CardCheck]:
    """Every A2A agent's card, fetched concurrently; ``timeout_s`` bounds each agent's check
    (all its card URLs together), so the whole check ends within it."""
    a2a = [a for a in agents if a.protocol is AgentProtocol.A2A]
    if not a2a:
        return []
    # One connection per agent at most (its URLs are tried in turn): no agent waits for a slot.
    pool = ConnectionPool(
        max_connections=len(a2a),
        max_idle_per_origin=0,
        idle_timeout_s=1.0,
        max_body=_MAX_CARD_BYTES,
    )
    try:
        return list(await asyncio.gather(*(_check_agent(pool, a, timeout_s) for a in a2a)))
    finally:
        await pool.close()
