"""The agent client on a fresh event loop, and one call of it: what the agent-client tests
(``tests/integration/test_agent_client*.py``) share, beside their raw agent."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

from router_service.adapters.agents import HttpAgentClient
from router_service.domain.routing import AgentSpec
from router_service.service.ports import AgentReply, Envelope

T = TypeVar("T")
BODY = b'{"log_id":"abc","payload":{"n":1}}'
ENVELOPE = Envelope(
    log_id="abc",
    sender_id="s",
    kind="one",
    payload={"n": 1},
    payload_json='{"n":1}',
    metadata={},
    timestamp=datetime(2026, 1, 1, tzinfo=UTC),
)
HEADERS = {
    "Content-Type": "application/json",
    "Idempotency-Key": "abc",
    "traceparent": "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01",
}
CAP = 4096


def run(
    scenario: Callable[[HttpAgentClient], Coroutine[Any, Any, T]],
    *,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
    **options: Any,
) -> T:
    """``scenario(client)`` on a fresh loop (of ``loop_factory``), with a client closed
    afterwards."""

    async def main() -> T:
        client = HttpAgentClient(
            max_connections=options.pop("max_connections", 8),
            max_response_bytes=CAP,
            **options,
        )
        try:
            return await scenario(client)
        finally:
            await client.close()

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main())


def call(
    client: HttpAgentClient, url: str, timeout_s: float = 2.0, **headers: str
) -> Awaitable[AgentReply]:
    return client.call(AgentSpec("a", url), BODY, headers or HEADERS, timeout_s)
