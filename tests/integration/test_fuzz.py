"""Hostile input finds no 5xx: schemathesis over the OpenAPI schema (NUL bytes allowed), and
hypothesis-made bodies with lone surrogates, NUL, deep nesting and extreme numbers straight at
POST /route; what is accepted reads back exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router_service.devtools.demo_agents import RunningAgents
from tests.conftest import API_KEY
from tests.support.server import RouterServer

BIN = Path(sys.executable).parent
JSON = {"Content-Type": "application/json"}


def test_schemathesis_finds_no_server_error(router: RouterServer) -> None:
    """On both backends: Postgres refuses values SQLite takes (a NUL in a filter was a 503
    ``database_unavailable`` on Postgres only)."""
    result = subprocess.run(
        [
            str(BIN / "st"),
            "run",
            f"{router.base_url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--header",
            f"X-API-Key: {API_KEY}",
            "--generation-allow-x00",
            "true",
            "--max-examples",
            "40",
            "--seed",
            "20261129",
            "--workers",
            "2",
            "--suppress-health-check",
            "all",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:]


# Numbers as they are spelled on the wire: exponents past a double, integers past Python's
# 4300-digit limit, -0, subnormals, underflow to zero.
number_text = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.builds(
        lambda sign, digits: sign + digits,
        st.sampled_from(["", "-"]),
        st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n),
    ),
    st.builds(
        "{}{}e{}".format,
        st.sampled_from(["", "-"]),
        st.sampled_from(["1", "2.5", "9.999", "0.1"]),
        st.integers(min_value=-1000, max_value=1000),
    ),
    st.sampled_from(["-0", "-0.0", "0e0", "5e-324", "2.2250738585072014e-308", "1e-400"]),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)


def test_huge_numbers_are_a_422_naming_the_problem_and_nothing_is_stored_or_sent(
    client: httpx.Client, agents: RunningAgents
) -> None:
    cases = {
        b'{"sender_id":"s","payload":{"x":1e999}}': "too large for a double",
        b'{"sender_id":"s","payload":{"x":' + b"1" * 5000 + b"}}": "5000 digits",
        b'{"sender_id":"s","payload":{},"metadata":{"x":-1e400}}': "too large for a double",
    }
    for body, message in cases.items():
        response = client.post("/route", content=body, headers=JSON)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "validation_error"
        assert message in response.json()["error"]["message"]
    assert client.get("/logs").json()["items"] == []
    assert agents.received("alpha") == []


def test_huge_integers_read_back_exactly_from_the_log_the_dlq_and_replay(
    client: httpx.Client, agents: RunningAgents
) -> None:
    huge = "9" * 400  # past a double: the store's JSON reader used to fail on it (500)
    body = (
        '{"sender_id":"s","payload":{"route":"one","n":-' + huge + '},"metadata":{"m":' + huge
    ) + "}}"
    agents.set("alpha", mode="fail", status=400)
    routed = client.post("/route", content=body, headers=JSON)
    assert routed.status_code == 202, routed.text
    log_id = routed.json()["log_id"]
    item = json.loads(client.get(f"/logs/{log_id}").text)
    assert item["payload"]["n"] == -int(huge)
    assert item["metadata"]["m"] == int(huge)
    assert json.loads(client.get("/logs").text)["items"][0]["metadata"]["m"] == int(huge)
    (entry,) = json.loads(client.get("/dlq").text)["items"]
    assert entry["payload"]["n"] == -int(huge)
    agents.set("alpha", mode="ok")
    replay = client.post("/dlq/replay", json={"ids": [entry["id"]]})
    assert replay.json()["succeeded"] == 1, replay.text
    (sent, *_) = agents.received("alpha")[-1:]
    assert sent["body"]["metadata"]["m"] == int(huge)
    assert sent["body"]["payload"]["n"] == -int(huge)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(numbers=st.lists(number_text, min_size=1, max_size=4))
def test_any_number_gets_an_answer_below_500_and_accepted_ones_read_back_exactly(
    client: httpx.Client, numbers: list[str]
) -> None:
    listed = ",".join(numbers)
    content = '{"sender_id":"n","payload":{"v":[' + listed + ']},"metadata":{"v":[' + listed + "]}}"
    response = client.post("/route", content=content, headers=JSON)
    assert response.status_code in (200, 202, 422), response.text
    if response.status_code == 422:
        assert response.json()["error"]["code"] == "validation_error"
        return
    stored = json.loads(client.get(f"/logs/{response.json()['log_id']}").text)
    expected = json.loads("[" + listed + "]")
    assert stored["payload"]["v"] == expected  # canonical text: exact, types and all
    # JSONB keeps numbers as decimals: 1e23 may come back as 100000000000000000000000 and -0.0
    # as 0. The same number, not the same spelling.
    assert [Decimal(str(v)) for v in stored["metadata"]["v"]] == [Decimal(str(v)) for v in expected]


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF)),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sender=st.text(max_size=300),
    payload=json_value,
    metadata=json_value,
    extra=st.dictionaries(st.sampled_from(["log_id", "timestamp", "mode", "x"]), json_value),
)
def test_any_json_body_gets_an_answer_below_500(
    client: httpx.Client, sender: str, payload: object, metadata: object, extra: dict[str, object]
) -> None:
    body = {"sender_id": sender, "payload": payload, "metadata": metadata, **extra}
    # ensure_ascii turns lone surrogates and NUL into \\ud800 and \\u0000 escapes on the wire.
    content = json.dumps(body, ensure_ascii=True)
    response = client.post("/route", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json"
