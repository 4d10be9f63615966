"""Connections by client: at most so many for one client, so many for all; a trusted proxy
carries many clients and is not counted as one."""

from __future__ import annotations

import ipaddress

from router_service.api.auth import counted_as
from router_service.api.connection_limits import ConnectionLimits


def client(limits: ConnectionLimits, address: str) -> str:
    """What the protocol counts a connection from ``address`` under."""
    return limits.client_of(address, counted_as(address))


def test_one_client_is_held_to_its_share_and_others_are_not() -> None:
    limits = ConnectionLimits(per_client=2, total=10)
    a = client(limits, "10.0.0.1")
    assert limits.admit(a) is None
    assert limits.admit(a) is None
    refused = limits.admit(a)
    assert refused is not None
    assert "2 connections already" in refused
    assert limits.admit(client(limits, "10.0.0.2")) is None
    limits.release(a)
    assert limits.admit(a) is None


def test_an_ipv6_client_is_its_64_and_a_trusted_proxy_is_not_counted() -> None:
    proxy = ipaddress.ip_network("10.9.9.9/32")
    limits = ConnectionLimits(per_client=1, total=10, proxies=(proxy,))
    assert client(limits, "2001:db8::1") == limits.client_of(
        "2001:db8::2", counted_as("2001:db8::2")
    )
    assert limits.admit(client(limits, "2001:db8::1")) is None
    assert limits.admit(client(limits, "2001:db8::2")) is not None
    assert client(limits, "10.9.9.9") == ""
    for _ in range(5):
        assert limits.admit(client(limits, "10.9.9.9")) is None


def test_all_clients_together_are_held_to_the_total() -> None:
    limits = ConnectionLimits(per_client=5, total=2)
    assert limits.admit("10.0.0.1") is None
    assert limits.admit("10.0.0.2") is None
    refused = limits.admit("10.0.0.3")
    assert refused is not None
    assert "limit of 2 connections" in refused
    limits.release("10.0.0.1")
    assert limits.admit("10.0.0.3") is None
