"""The card check's pure parts: where a card is looked for, when an interface is the agent's
endpoint, a card of any JSON shape judged without raising, and card text made printable."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from router_service.adapters.a2a_card import card_urls, check_card, shown_text
from router_service.domain.routing import AgentProtocol, AgentSpec

A2A = AgentSpec("a", "http://h:1/a2a/x", protocol=AgentProtocol.A2A, a2a_version="1.0")
A2A_03 = AgentSpec("a", "http://h:1/x", protocol=AgentProtocol.A2A, a2a_version="0.3")
SECURED = AgentSpec(
    "s", "http://user:secret@h:1/a2a/x?token=abc", protocol=AgentProtocol.A2A, a2a_version="1.0"
)


def test_card_urls_leave_the_credentials_out_and_keep_the_query_after_the_path() -> None:
    assert card_urls("http://user:secret@h:1/a2a/x?token=abc", "1.0") == [
        "http://h:1/a2a/x/.well-known/agent-card.json?token=abc",
        "http://h:1/.well-known/agent-card.json",
    ]
    assert card_urls("https://u@[::1]:8443/a2a/", "0.3")[2:] == [
        "https://[::1]:8443/a2a/.well-known/agent.json",
        "https://[::1]:8443/.well-known/agent.json",
    ]


def card(url: object, version: object = "1.0") -> dict[str, Any]:
    interface = {"url": url, "protocolBinding": "JSONRPC", "protocolVersion": version}
    return {"supportedInterfaces": [interface]}


def test_an_interface_is_the_endpoint_by_scheme_host_port_and_path() -> None:
    for same in ("http://h:1/a2a/x", "HTTP://H:1/a2a/x/", "http://other:pw@h:1/a2a/x?v=2"):
        assert check_card(SECURED, card(same)) == ("1.0", None), same
    assert check_card(
        AgentSpec("d", "http://h/a2a", protocol=AgentProtocol.A2A), card("http://h:80/a2a")
    ) == ("1.0", None)
    for other in ("https://h:1/a2a/x", "http://h:2/a2a/x", "http://g:1/a2a/x", "http://h:1/a2a"):
        assert check_card(SECURED, card(other))[1] == (
            "no JSONRPC interface at http://user:***@h:1/a2a/x?token=***"
        ), other
    for broken in ("http://[h", "http://h:99999/a2a/x", 5, None, ["http://h:1/a2a/x"]):
        assert check_card(SECURED, card(broken))[1] is not None


def test_a_type_confused_card_is_a_problem_not_an_exception() -> None:
    good = {"url": "http://h:1/x", "protocolVersion": "0.3.0", "preferredTransport": "GRPC"}
    for extras in (5, True, "JSONRPC", {"url": "http://h:1/x"}, [5, None, "x"]):
        assert check_card(A2A_03, good | {"additionalInterfaces": extras})[1] == (
            "the card does not serve JSON-RPC at http://h:1/x"
        )
    assert check_card(A2A_03, good | {"preferredTransport": 1})[1] is not None
    assert check_card(A2A_03, good | {"preferredTransport": "JSONRPC", "protocolVersion": 0.3})[
        1
    ] == ("the card says version ?, not 0.3")
    assert check_card(A2A, card("http://h:1/a2a/x", 1.0))[1] == (
        "the card offers version ?, not 1.0"
    )
    assert check_card(A2A, {"supportedInterfaces": [{"protocolBinding": ["JSONRPC"]}]})[1] == (
        "no JSONRPC interface at http://h:1/a2a/x"
    )


SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
FIELDS = st.sampled_from(
    [
        "url",
        "protocolVersion",
        "preferredTransport",
        "additionalInterfaces",
        "supportedInterfaces",
        "transport",
        "protocolBinding",
    ]
)
VALUES = st.recursive(
    JSON, lambda inner: st.dictionaries(FIELDS, inner, max_size=5) | st.lists(inner, max_size=3)
)
CARDS = st.dictionaries(FIELDS, SCALARS | VALUES, max_size=5) | JSON


@given(CARDS)
def test_any_json_is_judged_without_raising(value: Any) -> None:
    for spec in (A2A, A2A_03):
        version, problem = check_card(spec, value)
        for text in (version or "", problem or ""):
            assert text.isprintable()


def test_card_text_is_escaped_and_cut() -> None:
    assert shown_text("0.3.0") == "0.3.0"
    assert shown_text("1.0\r\x1b[2Kok\\\u202e") == "1.0\\r\\x1b[2Kok\\\\\\u202e"
    assert shown_text("v" * 500_000) == "v" * 64 + "..."
    assert shown_text("ab\ncd", limit=3) == "ab\\n..."
