"""The A2A client against a raw agent that answers another request's JSON-RPC id: an invalid
response, and the connection it came on is never used again (our own answer may follow on
it)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import orjson
import pytest

from router_service.adapters.a2a import A2aAgentClient
from router_service.adapters.agents import HttpAgentClient
from router_service.domain.errors import RetryableAgentError
from router_service.domain.routing import AgentProtocol, AgentSpec
from router_service.domain.trace import TraceContext
from router_service.service.ports import AgentReply
from tests.support.agent_calls import ENVELOPE, run
from tests.support.raw_agent import RawAgent, Received, response

MESSAGE = {"role": "ROLE_AGENT", "messageId": "m1", "parts": [{"text": "done"}]}


async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
    """On the first connection, every answer carries another request's id (keep-alive
    allowed); on later ones, the request's own."""
    request_id = orjson.loads(received.body)["id"]
    answered_id = "someone-else" if received.connection == 0 else request_id
    rpc = {"jsonrpc": "2.0", "id": answered_id, "result": {"message": MESSAGE}}
    writer.write(response(200, orjson.dumps(rpc)))
    await writer.drain()
    return True


def deliver(client: HttpAgentClient, url: str) -> Awaitable[AgentReply]:
    spec = AgentSpec("seer", url, protocol=AgentProtocol.A2A)
    span = TraceContext.from_header(None)
    return A2aAgentClient(client).deliver(spec, ENVELOPE, span, 2.0)


def test_an_answer_with_another_requests_id_is_invalid_and_its_connection_dropped() -> None:
    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> AgentReply:
            with pytest.raises(RetryableAgentError) as caught:
                await deliver(client, agent.url())
            error = caught.value
            assert error.message == (
                "invalid response: JSON-RPC id 'someone-else' is not this request's"
            )
            assert (error.status_code, error.response) == (200, None)  # not another's answer
            return await deliver(client, agent.url())  # a retry: on a new connection

        reply = run(scenario)
    assert reply.body == {"message": MESSAGE}
    assert [r.connection for r in agent.requests] == [0, 1]
    assert agent.accepts == 2
