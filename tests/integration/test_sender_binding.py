"""A key bound to its senders (``senders`` in API_KEYS_FILE) routes only as them: another
client's sender id, and with it that sender's limit and share, is not its to take."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings
from tests.support.server import RouterServer

KEYS = """
keys:
  - {name: shop, key: shop-key, scopes: [route], senders: ["shop-*"]}
  - {name: billing, key: billing-key, scopes: [route], senders: [billing]}
  - {name: ops, key: ops-key, scopes: [logs:read]}
"""


@pytest.fixture
def bound(database_url: str, routing_file: Path, tmp_path: Path) -> Iterator[RouterServer]:
    keys = tmp_path / "keys.yaml"
    keys.write_text(KEYS)
    settings = make_settings(
        database_url,
        routing_file,
        api_key=None,
        api_keys_file=keys,
        auth_failures_per_minute=1,
    )
    with RouterServer(settings) as server:
        yield server


def route(server: RouterServer, key: str, sender_id: str) -> httpx.Response:
    body = {"sender_id": sender_id, "payload": {"route": "one", "n": sender_id}}
    return httpx.post(f"{server.base_url}/route", json=body, headers={"X-API-Key": key})


def test_a_key_routes_only_as_its_senders(bound: RouterServer) -> None:
    assert route(bound, "shop-key", "shop-eu").status_code == 200  # a prefix
    assert route(bound, "billing-key", "billing").status_code == 200  # an exact id
    for key, sender in (
        ("shop-key", "billing"),
        ("billing-key", "billing-2"),
        ("shop-key", "shop"),
    ):
        refused = route(bound, key, sender)
        assert refused.status_code == 403, (key, sender, refused.text)
        error = refused.json()["error"]
        assert error["code"] == "forbidden"
        assert f"may not route signals as sender {sender!r}" in error["message"]
    # Nothing of the refused signals was stored; three refusals did not lock the keys out
    # (they are not failed authentications, whose limit here is 1 a minute).
    for sender, stored in (("shop", 0), ("billing-2", 0), ("shop-eu", 1)):
        logs = httpx.get(
            f"{bound.base_url}/logs",
            params={"sender_id": sender},
            headers={"X-API-Key": "ops-key"},
        )
        assert len(logs.json()["items"]) == stored, sender
    assert route(bound, "shop-key", "shop-us").status_code == 200
