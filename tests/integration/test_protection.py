"""Protecting the router: scopes, auth failure limits, back-pressure, slow and huge clients."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from router_service.devtools.demo_agents import RunningAgents
from tests.conftest import API_KEY, make_settings
from tests.support.polling import wait_for
from tests.support.server import RouterServer


@pytest.fixture
def strict(database_url: str, routing_file: Path) -> Iterator[RouterServer]:
    settings = make_settings(
        database_url,
        routing_file,
        api_key=None,
        api_keys="ingest:in-key:route,ops:ops-key:logs:read+dlq:admin",
        auth_failures_per_minute=3,
        max_in_flight=1,
        header_timeout_s=0.3,
        body_timeout_s=0.3,
        max_string_chars=1000,
        max_array_items=50,
    )
    with RouterServer(settings) as server:
        yield server


IN_FLIGHT_GAUGE = "router_in_flight_requests"


def post(
    server: RouterServer, key: str, body: object, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/route", json=body, headers=headers or {"X-API-Key": key}, timeout=30
    )


def test_scopes_are_enforced_per_endpoint(strict: RouterServer) -> None:
    signal = {"sender_id": "s", "payload": {"route": "one"}}
    assert post(strict, "in-key", signal).status_code == 200
    assert post(strict, "ops-key", signal).status_code == 403
    logs = httpx.get(f"{strict.base_url}/logs", headers={"X-API-Key": "in-key"})
    assert logs.status_code == 403
    assert logs.json()["error"]["code"] == "forbidden"
    assert httpx.get(f"{strict.base_url}/logs", headers={"X-API-Key": "ops-key"}).status_code == 200
    replay = httpx.post(
        f"{strict.base_url}/dlq/replay", json={"limit": 1}, headers={"X-API-Key": "ops-key"}
    )
    assert replay.status_code == 200


def test_repeated_auth_failures_are_refused_for_a_while(strict: RouterServer) -> None:
    for _ in range(3):
        assert post(strict, "wrong", {}).status_code == 401
    refused = post(strict, "wrong", {})
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_auth_failures"
    assert int(refused.headers["Retry-After"]) > 0


def test_bad_keys_from_an_address_never_lock_out_valid_keys_from_it(
    strict: RouterServer,
) -> None:
    """Behind a load balancer every client shares an address: 1,000 bad keys interleaved with
    valid ones. Every valid request is served; bad ones get 429 once over the limit (3)."""
    signal = {"sender_id": "s", "payload": {"route": "one"}}
    statuses: list[int] = []
    with httpx.Client(base_url=strict.base_url, timeout=30) as http:
        for index in range(1000):
            bad = http.post("/route", json=signal, headers={"X-API-Key": f"bad-{index}"})
            statuses.append(bad.status_code)
            if index % 10 == 9:
                good = http.post("/route", json=signal, headers={"X-API-Key": "in-key"})
                assert good.status_code == 200, (index, good.text)
    assert statuses[:3] == [401] * 3
    assert set(statuses[3:]) == {429}


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
    strict: RouterServer,
) -> None:
    for index in range(4):
        forged = {"X-API-Key": "wrong", "X-Forwarded-For": f"10.0.0.{index}"}
        answer = post(strict, "wrong", {}, headers=forged)
        # Four different forwarded addresses, one real peer: the fourth is over the limit.
        assert answer.status_code == (429 if index == 3 else 401)


def test_behind_a_trusted_proxy_failures_count_per_forwarded_client(
    database_url: str, routing_file: Path
) -> None:
    settings = make_settings(
        database_url, routing_file, auth_failures_per_minute=2, trusted_proxies="127.0.0.0/8"
    )
    server = RouterServer(settings).start()
    try:

        def bad(client: str) -> int:
            headers = {"X-API-Key": "wrong", "X-Forwarded-For": f"{client}, 127.0.0.1"}
            return post(server, "wrong", {}, headers=headers).status_code

        assert [bad("203.0.113.7") for _ in range(3)] == [401, 401, 429]
        # Another client behind the same proxy is not the noisy one.
        assert bad("198.51.100.1") == 401
    finally:
        server.stop()


def test_beyond_max_in_flight_is_a_fast_503_with_retry_after(
    strict: RouterServer, agents: RunningAgents
) -> None:
    agents.set("alpha", mode="slow", delay_ms=400)
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(post, strict, "in-key", {"sender_id": "s", "payload": {"route": "one"}})
        agents.wait_received("alpha", 1)
        second = post(strict, "in-key", {"sender_id": "s", "payload": {"route": "one"}})
        assert first.result().status_code == 200
    assert second.status_code == 503
    assert second.json()["error"]["code"] == "overloaded"
    assert second.headers["Retry-After"] == "1"


def _in_flight_requests(server: RouterServer) -> float:
    text = httpx.get(f"{server.base_url}/metrics", headers={"X-API-Key": API_KEY}).text
    [family] = [f for f in text_string_to_metric_families(text) if f.name == IN_FLIGHT_GAUGE]
    return float(family.samples[0].value)


def test_a_client_sending_its_body_slowly_holds_no_slot_of_max_in_flight(
    database_url: str, routing_file: Path
) -> None:
    """Counted from the request's start, 512 connections stalled in their bodies held every
    MAX_IN_FLIGHT slot for BODY_TIMEOUT_S, and every other client got 503 ``overloaded``."""
    settings = make_settings(database_url, routing_file, max_in_flight=1, body_timeout_s=20)
    server = RouterServer(settings).start()
    port = int(server.base_url.rsplit(":", 1)[1])
    head = (
        f"POST /route HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as slow:
            slow.sendall(head)  # and nothing more
            # The stalled request is in the router (this read is the other one in flight).
            wait_for(lambda: _in_flight_requests(server) >= 2, what="the stalled request")
            answer = post(server, API_KEY, {"sender_id": "s", "payload": {"route": "one"}})
            assert answer.status_code == 200, answer.text
    finally:
        server.stop()


def test_long_strings_and_arrays_are_422(strict: RouterServer) -> None:
    long_string = post(strict, "in-key", {"sender_id": "s", "payload": {"t": "x" * 1001}})
    assert long_string.status_code == 422
    many_items = post(strict, "in-key", {"sender_id": "s", "payload": {"t": list(range(51))}})
    assert many_items.status_code == 422


def _raw(port: int, data: bytes, timeout_s: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_slow_headers_are_cut_with_408(strict: RouterServer) -> None:
    port = int(strict.base_url.rsplit(":", 1)[1])
    answer = _raw(port, b"POST /route HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"request_timeout" in answer


def test_slow_body_is_cut_with_408(strict: RouterServer) -> None:
    port = int(strict.base_url.rsplit(":", 1)[1])
    head = (
        b"POST /route HTTP/1.1\r\nHost: x\r\nX-API-Key: in-key\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    answer = _raw(port, head)
    assert answer.startswith(b"HTTP/1.1 408")


def test_a_body_still_missing_after_the_answer_ends_the_connection_at_the_body_timeout(
    strict: RouterServer,
) -> None:
    port = int(strict.base_url.rsplit(":", 1)[1])
    head = (
        b"POST /route HTTP/1.1\r\nHost: x\r\nX-API-Key: not-a-key\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    started = time.perf_counter()
    answer = _raw(port, head)  # until the router closes the connection
    elapsed = time.perf_counter() - started
    assert answer.startswith(b"HTTP/1.1 401")  # answered before the body was read
    assert answer.count(b"HTTP/1.1 ") == 1  # and no 408 written after that answer
    assert elapsed < 3.0  # BODY_TIMEOUT_S (0.3 s), not the 5-s keep-alive timeout


def test_huge_headers_are_431(strict: RouterServer) -> None:
    response = httpx.get(f"{strict.base_url}/health/live", headers={"X-Big": "y" * 40_000})
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "headers_too_large"


def test_a_100_mb_declared_body_is_refused_without_being_read(strict: RouterServer) -> None:
    port = int(strict.base_url.rsplit(":", 1)[1])
    head = (
        b"POST /route HTTP/1.1\r\nHost: x\r\nX-API-Key: in-key\r\n"
        b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
    )
    answer = _raw(port, head)
    assert answer.startswith(b"HTTP/1.1 413")


def test_by_default_any_body_under_the_body_limit_is_admitted(client: httpx.Client) -> None:
    """261,120 bytes, under the 256 KiB MAX_BODY_BYTES: one long string, then one long array."""
    prefix = b'{"sender_id":"s","payload":{"route":"one","t":"'
    body = prefix + b"x" * (261_120 - len(prefix) - 3) + b'"}}'
    assert len(body) == 261_120
    headers = {"Content-Type": "application/json"}
    answer = client.post("/route", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    items = b'{"sender_id":"s","payload":{"route":"one","t":[' + b"0," * 100_000 + b"0]}}"
    answer = client.post("/route", content=items, headers=headers)
    assert answer.status_code == 200, answer.text
