"""Hostile input finds no 5xx: schemathesis over the OpenAPI schema (NUL bytes allowed), and
hypothesis-made bodies with lone surrogates, NUL and deep nesting straight at POST /route."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import API_KEY
from tests.support.server import RouterServer

BIN = Path(sys.executable).parent


def test_schemathesis_finds_no_server_error(router: RouterServer, backend: str) -> None:
    if backend != "sqlite":
        return  # one backend is enough for the schema fuzz; both run the hypothesis test below
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
