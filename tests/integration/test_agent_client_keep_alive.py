"""The agent client's keep-alive connections against raw loopback agents: reuse, a stale
connection's re-send counted as an attempt, idle time-outs, the bound on connections."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from router_service.adapters.agents import HttpAgentClient
from router_service.domain.errors import RetryableAgentError
from router_service.domain.outcome import AgentResult
from router_service.domain.retry import RetryPolicy
from router_service.domain.routing import AgentSpec
from router_service.observability.events import Telemetry
from router_service.observability.metrics import Metrics
from router_service.observability.tracing import TraceContext
from router_service.service.dispatch import Dispatcher
from router_service.service.ports import AgentReply
from tests.support.agent_calls import ENVELOPE, call, run
from tests.support.polling import eventually
from tests.support.raw_agent import RawAgent, Received, response


def test_sequential_calls_reuse_one_keep_alive_connection() -> None:
    with RawAgent() as agent:

        async def scenario(client: HttpAgentClient) -> list[AgentReply]:
            return [await call(client, agent.url()) for _ in range(5)]

        replies = run(scenario)
    assert [r.status_code for r in replies] == [200] * 5
    assert agent.accepts == 1
    assert [r.connection for r in agent.requests] == [0] * 5


def test_connection_close_answer_is_not_reused() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(response(headers={"Connection": "close"}))
        await writer.drain()
        return True  # the server would go on; the client must not

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> None:
            for _ in range(3):
                assert (await call(client, agent.url())).body == {"ok": True}

        run(scenario)
    assert agent.accepts == 3
    assert [r.connection for r in agent.requests] == [0, 1, 2]


def test_idle_connection_closed_by_the_agent_is_an_immediate_retryable_error() -> None:
    with RawAgent() as agent:

        async def scenario(client: HttpAgentClient) -> AgentReply:
            await call(client, agent.url())
            # The agent closes its idle keep-alive connection while this loop is held still:
            # the client sends its next request on it before it can see the close.
            agent.drop_connections()
            # Never sent again behind the caller's back: the caller's retry is a counted attempt.
            with pytest.raises(RetryableAgentError, match="reused keep-alive") as caught:
                await call(client, agent.url())
            assert caught.value.retry_after_s == 0.0  # the keep-alive race needs no backoff
            return await call(client, agent.url())

        reply = run(scenario)
    assert reply.status_code == 200
    assert agent.accepts == 2
    assert [r.connection for r in agent.requests] == [0, 1]


def test_an_agent_that_reads_then_closes_sees_as_many_requests_as_counted_attempts() -> None:
    """The agent accepts the second signal's request and closes without answering: the re-send
    on a fresh connection is attempt 2 in the result, the metrics and the logs."""

    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        if len(agent.requests) == 2:
            return False  # read it, then close without a byte of answer
        writer.write(response())
        await writer.drain()
        return True

    metrics = Metrics()
    attempts: list[dict[str, Any]] = []

    class Log:
        def info(self, event: str, **fields: Any) -> None:
            if event == "agent.attempt":
                attempts.append(fields)

    async def scenario(client: HttpAgentClient) -> list[AgentResult]:
        dispatcher = Dispatcher(
            {"http": client},
            Telemetry(metrics, logger=Log()),
            policy=RetryPolicy(max_attempts=3, base_s=0.001, cap_s=0.001),
            agent_timeout_s=2.0,
            fanout_concurrency=4,
            global_concurrency=8,
        )
        spec = AgentSpec("a", agent.url())
        trace = TraceContext("0" * 31 + "1", "0" * 15 + "1")
        envelope = ENVELOPE
        return [
            await dispatcher.call_one(spec, envelope, trace, time.perf_counter() + 5)
            for _ in range(2)
        ]

    with RawAgent(answer) as agent:
        first, second = run(scenario)
    assert (first.ok, first.attempts) == (True, 1)
    assert (second.ok, second.attempts) == (True, 2)
    assert len(agent.requests) == 3  # one for the first signal, two for the second
    assert [r.connection for r in agent.requests] == [0, 0, 1]
    assert _sample(metrics, "retry_attempts_total") == 1
    assert _sample(metrics, "routing_errors_total", agent="a") == 1
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [
        (1, "ok"),
        (1, "retryable"),
        (2, "ok"),
    ]


def test_the_re_send_after_a_stale_connection_is_bounded_like_any_retry() -> None:
    """An agent that reads every request on a reused connection and closes: attempts stop at
    RETRY_MAX_ATTEMPTS, each one counted."""

    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        if len(agent.requests) == 1:
            writer.write(response())
            await writer.drain()
            return True
        return False

    async def scenario(client: HttpAgentClient) -> AgentResult:
        dispatcher = Dispatcher(
            {"http": client},
            Telemetry(Metrics()),
            policy=RetryPolicy(max_attempts=2, base_s=0.001, cap_s=0.001),
            agent_timeout_s=2.0,
            fanout_concurrency=4,
            global_concurrency=8,
        )
        spec = AgentSpec("a", agent.url())
        trace = TraceContext("0" * 31 + "1", "0" * 15 + "1")
        envelope = ENVELOPE
        await dispatcher.call_one(spec, envelope, trace, time.perf_counter() + 5)
        return await dispatcher.call_one(spec, envelope, trace, time.perf_counter() + 5)

    with RawAgent(answer) as agent:
        result = run(scenario)
    assert (result.ok, result.attempts) == (False, 2)
    assert len(agent.requests) == 3


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_reused_connection_failing_after_an_answer_byte_is_not_retried() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        if len(agent.requests) == 1:
            writer.write(response())
            await writer.drain()
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Len")
        await writer.drain()
        return False

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> None:
            await call(client, agent.url())
            with pytest.raises(RetryableAgentError, match="connection error: closed before"):
                await call(client, agent.url())

        run(scenario)
    assert len(agent.requests) == 2
    assert agent.accepts == 1


def test_new_connection_closed_without_an_answer_is_not_retried() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        return False

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> None:
            with pytest.raises(RetryableAgentError, match="connection error: closed without"):
                await call(client, agent.url())

        run(scenario)
    assert len(agent.requests) == 1


def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    with RawAgent() as agent:

        async def scenario(client: HttpAgentClient) -> None:
            await call(client, agent.url())
            assert agent.open == 1
            await eventually(lambda: agent.open == 0)

        run(scenario, idle_timeout_s=0.1)


def test_close_closes_the_idle_connections() -> None:
    with RawAgent() as agent:

        async def scenario(client: HttpAgentClient) -> None:
            await call(client, agent.url())
            await client.close()
            await eventually(lambda: agent.open == 0)

        run(scenario)


def test_max_connections_bounds_concurrent_connections() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.05)
        writer.write(response())
        await writer.drain()
        return True

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> list[AgentReply]:
            return await asyncio.gather(*(call(client, agent.url()) for _ in range(12)))

        replies = run(scenario, max_connections=3)
    assert [r.status_code for r in replies] == [200] * 12
    assert agent.peak == 3
    assert agent.accepts == 3


def test_waiting_for_a_connection_counts_against_the_deadline() -> None:
    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.5)
        writer.write(response())
        await writer.drain()
        return True

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> None:
            slow = asyncio.create_task(call(client, agent.url(), timeout_s=2.0))
            await eventually(lambda: len(agent.requests) == 1)
            with pytest.raises(RetryableAgentError, match="timed out after 100 ms"):
                await call(client, agent.url(), timeout_s=0.1)
            assert (await slow).status_code == 200

        run(scenario, max_connections=1)
    assert agent.peak == 1
