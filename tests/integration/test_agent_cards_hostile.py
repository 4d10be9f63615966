"""The card check against raw loopback agents: credentials in the agent's URL, a query, a
redirect, a card that drips, one too large or not JSON, a type-confused card, and card text
meant to rewrite the terminal."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from router_service.adapters.a2a_card import CardCheck, check_agents
from router_service.cli import main
from router_service.domain.routing import AgentProtocol, AgentSpec
from tests.support.raw_agent import RawAgent, Received, response
from tests.support.routing_files import Entry, agent, routing_text

CARD_PATH = "/a2a/.well-known/agent-card.json"
MIB = 1024 * 1024


def card_1_0(url: str, version: str = "1.0") -> bytes:
    interface = {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": version}
    return json.dumps({"supportedInterfaces": [interface]}).encode()


def serving(pages: Callable[[str], bytes | None]) -> Callable[..., Any]:
    """An answer that writes ``pages(request target)``, or a 404 when it gives None."""

    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        page = pages(received.request_line.split(" ")[1])
        writer.write(page if page is not None else response(404, b"{}"))
        await writer.drain()
        return True

    return answer


def only_at(target: str, page: bytes) -> Callable[..., Any]:
    """An answer that writes ``page`` at ``target`` (path and query) and a 404 elsewhere."""
    return serving(lambda path: page if path == target else None)


def a2a(name: str, url: str, version: str = "1.0") -> AgentSpec:
    return AgentSpec(name, url, protocol=AgentProtocol.A2A, a2a_version=version)


def check(*specs: AgentSpec, timeout_s: float = 5.0) -> list[CardCheck]:
    return asyncio.run(check_agents(specs, timeout_s))


def test_credentials_in_the_url_go_in_a_basic_header_only() -> None:
    with RawAgent() as raw:
        plain = raw.url("/a2a")
        raw.answer = only_at(CARD_PATH, response(200, card_1_0(plain)))
        url = plain.replace("://", "://user:s%40cret@")
        [row] = check(a2a("secured", url))
    assert row.ok, row.problem
    assert row.card_url == f"{plain}/.well-known/agent-card.json"
    request = raw.requests[0]
    assert request.request_line == f"GET {CARD_PATH} HTTP/1.1"
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"user:s@cret").decode()
    assert b"cret" not in request.raw_head.replace(request.headers["authorization"].encode(), b"")


def test_the_query_stays_after_the_card_path_and_is_ignored_in_the_comparison() -> None:
    with RawAgent() as raw:
        plain = raw.url("/a2a")
        raw.answer = only_at(f"{CARD_PATH}?token=abc", response(200, card_1_0(plain)))
        [row] = check(a2a("tokened", f"{plain}?token=abc"))
    assert row.ok, row.problem
    assert raw.requests[0].request_line == f"GET {CARD_PATH}?token=abc HTTP/1.1"
    assert row.card_url == f"{plain}/.well-known/agent-card.json?token=***"


def test_a_redirect_is_not_followed_and_names_where_it_pointed() -> None:
    with RawAgent() as elsewhere, RawAgent() as raw:
        good = card_1_0(raw.url("/a2a"))
        elsewhere.answer = serving(lambda path: response(200, good))
        target = elsewhere.url("/card?token=xyz").replace("://", "://them:hunter2@")
        moved = response(302, b"", headers={"Location": target})
        raw.answer = only_at(CARD_PATH, moved)
        [row] = check(a2a("moved", raw.url("/a2a")))
    assert not row.ok
    assert elsewhere.requests == []
    shown = elsewhere.url("/card?token=***").replace("://", "://them:***@")
    assert f"HTTP 302 at {raw.url(CARD_PATH)}: redirects to {shown}" in str(row.problem)
    assert "hunter2" not in str(row.problem)
    assert "xyz" not in str(row.problem)


def test_one_deadline_covers_a_card_that_drips() -> None:
    async def drip(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(100):  # 1 byte every 50 ms: each read is quick, the whole is not
            writer.write(b" ")
            await writer.drain()
            await asyncio.sleep(0.05)
        return False

    with RawAgent(drip) as raw:
        started = time.monotonic()
        [row] = check(a2a("slow", raw.url("/a2a")), timeout_s=0.5)
        elapsed = time.monotonic() - started
    assert row.problem == "no card within 0.5 s (all of the agent's card URLs together)"
    assert elapsed < 3.0  # the drip alone lasts 5 s
    assert len(raw.requests) == 1  # the deadline is the agent's, not the URL's


def test_a_card_over_the_cap_is_reported_not_the_404_after_it() -> None:
    huge = json.dumps({"padding": "x" * MIB}).encode()
    with RawAgent(only_at(CARD_PATH, response(200, huge))) as raw:
        [row] = check(a2a("huge", raw.url("/a2a")))
    assert row.problem == f"the card at {raw.url(CARD_PATH)} is larger than 1 MiB"


def test_a_card_that_is_not_json_is_reported_not_the_404_after_it() -> None:
    page = response(200, b"<html>hello</html>", headers={"Content-Type": "text/html"})
    with RawAgent(only_at(CARD_PATH, page)) as raw:
        [row] = check(a2a("html", raw.url("/a2a")))
    assert str(row.problem).startswith(f"the card at {raw.url(CARD_PATH)} is not JSON")


def test_an_agent_whose_check_fails_unexpectedly_gets_its_row_and_others_keep_theirs() -> None:
    with RawAgent() as raw:
        plain = raw.url("/a2a")
        raw.answer = only_at(CARD_PATH, response(200, card_1_0(plain)))
        # Past the routing file's validation (built here directly): a port no socket can have,
        # and a scheme the agent client does not speak (whose error quotes the URL).
        rows = check(
            a2a("bad-port", "http://127.0.0.1:99999/a2a"),
            a2a("ftp", "ftp://user:secret@127.0.0.1:9/a2a"),
            a2a("fine", plain),
        )
    assert [row.agent for row in rows] == ["bad-port", "ftp", "fine"]
    assert str(rows[0].problem).startswith("the check failed: ValueError")
    assert str(rows[1].problem).startswith("the check failed: ValueError: not an http(s) URL")
    assert "ftp://user:***@127.0.0.1:9/a2a/" in str(rows[1].problem)
    assert "secret" not in str(rows[1].problem)
    assert rows[2].ok, rows[2].problem


def write(tmp_path: Path, *entries: Entry) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(routing_text(entries, {"default": {"agents": [entries[0]["name"]]}}))
    return path


def test_a_type_confused_card_is_its_row_not_a_traceback(tmp_path: Path) -> None:
    def pages(path: str) -> bytes | None:
        name = path.split("/")[2]
        card: dict[str, Any] = {"url": raw.url(f"/a2a/{name}"), "protocolVersion": "0.3.0"}
        if name == "five":
            card |= {"preferredTransport": "GRPC", "additionalInterfaces": 5}
        elif name == "true":
            card |= {"preferredTransport": "GRPC", "additionalInterfaces": True}
        return response(200, json.dumps(card).encode()) if "well-known" in path else None

    with RawAgent(serving(pages)) as raw:
        path = write(
            tmp_path,
            *(
                agent(name, raw.url(f"/a2a/{name}"), protocol="a2a", a2a_version="0.3")
                for name in ("five", "true", "good")
            ),
        )
        result = CliRunner().invoke(main, ["agents", "check", "--config", str(path)])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    rows = result.output.splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["five", "true", "good"]
    assert "does not serve JSON-RPC" in rows[0]
    assert "does not serve JSON-RPC" in rows[1]
    assert rows[2].endswith("  ok")


def test_card_text_is_printed_escaped_and_cut(tmp_path: Path) -> None:
    hostile = "9.9\r\x1b[2Kgood    1.0      1.0      ok" + "v" * 500_000
    with RawAgent() as raw:
        url = raw.url("/a2a")
        card = card_1_0(url, hostile)
        raw.answer = only_at(CARD_PATH, response(200, card))
        path = write(tmp_path, agent("evil", url, protocol="a2a"))
        result = CliRunner().invoke(main, ["agents", "check", "--config", str(path)])
    assert result.exit_code == 1, result.output
    assert "\r" not in result.output
    assert "\x1b" not in result.output
    assert "9.9\\r\\x1b[2Kgood" in result.output
    assert len(result.output) < 1000
