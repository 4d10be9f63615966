"""The agent client against hostile raw agents: an answer over the size cap, by its declared
length or its chunks, and an agent that drip-feeds its answer past the attempt's deadline."""

from __future__ import annotations

import asyncio
import threading

import pytest

from router_service.adapters.agents import HttpAgentClient
from router_service.adapters.http1 import MAX_HEAD_BYTES
from router_service.domain.errors import PermanentAgentError, RetryableAgentError
from tests.support.agent_calls import CAP, call, run
from tests.support.fake_clock import MovableClockLoop
from tests.support.polling import eventually
from tests.support.raw_agent import RawAgent, Received, response


def test_declared_length_over_the_cap_is_refused_without_reading_the_body() -> None:
    verdict: asyncio.Queue[None] = asyncio.Queue()  # on the agent's loop
    held: list[bool] = []

    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {CAP + 1}\r\n\r\n".encode())
        await writer.drain()
        await verdict.get()  # the body is never sent: the client must not wait for it
        held.append(True)
        return False

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> None:
            with pytest.raises(PermanentAgentError, match=f"larger than {CAP} bytes") as caught:
                await call(client, agent.url(), timeout_s=5.0)
            assert caught.value.status_code == 200
            agent.call_soon(verdict.put_nowait, None)
            await eventually(lambda: held)

        run(scenario)
    # Refused on the head alone, while the agent still held the whole body back (and not by
    # the 5 s deadline: that would be a timeout, a retryable error).
    assert held == [True]


def test_chunked_body_over_the_cap_stops_the_read_and_the_connection() -> None:
    sent: list[int] = []

    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        if received.connection > 0:
            writer.write(response())
            await writer.drain()
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        part = b"x" * 1024
        try:
            for _ in range(1024):  # 1 MiB offered; the cap is 4 KiB
                writer.write(b"400\r\n" + part + b"\r\n")
                await writer.drain()
                sent.append(len(part))
                await asyncio.sleep(0.002)
        except ConnectionError:
            return False
        return True

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> None:
            with pytest.raises(PermanentAgentError, match=f"larger than {CAP} bytes"):
                await call(client, agent.url(), timeout_s=5.0)
            # Never reused: the next call gets a new connection.
            assert (await call(client, agent.url())).status_code == 200

        run(scenario)
    assert sum(sent) < 256 * 1024
    assert agent.accepts == 2


def test_drip_feeding_agent_hits_the_one_deadline_and_its_connection_is_dropped() -> None:
    """Every read is quick and the answer never ends: the attempt ends at the deadline counted
    from its start, not from its last read. The client's loop has a clock the test moves, so the
    deadline passes at a step of the test, not after some wall-clock time."""
    drip: asyncio.Queue[bool] = asyncio.Queue()  # on the agent's loop: True, a byte; False, stop
    dripped: list[bytes] = []

    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        if received.connection > 0:
            writer.write(response())
            await writer.drain()
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        await writer.drain()
        while await drip.get():
            writer.write(b" ")
            await writer.drain()
            dripped.append(b" ")
        return False

    with RawAgent(answer) as agent:

        async def one_more_byte() -> None:
            wanted = len(dripped) + 1
            agent.call_soon(drip.put_nowait, True)
            await eventually(lambda: len(dripped) == wanted)
            await asyncio.sleep(0.01)  # a turn of the loop for the client to read it

        async def scenario(client: HttpAgentClient) -> None:
            loop = asyncio.get_running_loop()
            assert isinstance(loop, MovableClockLoop)
            attempt = asyncio.create_task(call(client, agent.url(), timeout_s=60.0))
            await eventually(lambda: len(agent.requests) == 1)  # its deadline is running
            for step_s in (20.0, 20.0, 10.0):  # to 50 s of the 60, a body byte after each step
                loop.advance(step_s)
                await one_more_byte()
                assert not attempt.done()
            loop.advance(15.0)  # 65 s since the request, 15 s since the last read
            with pytest.raises(RetryableAgentError, match="timed out after 60000 ms"):
                # The deadline has passed: the attempt ends at the loop's next turn. (A deadline
                # counted from the last read would pass 45 s later.)
                async with asyncio.timeout(30):
                    await attempt
            agent.call_soon(drip.put_nowait, False)
            assert (await call(client, agent.url())).status_code == 200

        run(scenario, loop_factory=MovableClockLoop)
    assert len(dripped) == 3  # of the 100 bytes announced
    assert agent.accepts == 2


@pytest.mark.parametrize("status", [200, 500])
@pytest.mark.parametrize(
    ("levels", "number"),
    [
        # A long number sends the answer to the exact parser, whose depth is Python's
        # recursion limit: past it, it raised RecursionError out of the dispatch.
        (2000, b"12345678901234567890"),
        # orjson reads 1,000 levels, but nothing could write them again (the log, the
        # client's answer): a 500 after the agent had taken the signal.
        (1000, b"1"),
    ],
)
def test_an_answer_nested_too_deep_to_write_again_is_kept_as_text(
    status: int, levels: int, number: bytes
) -> None:
    """Kept as text, like any answer that is not JSON."""
    deep = b"[" * levels + number + b"]" * levels

    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        writer.write(response(status, deep))
        await writer.drain()
        return True

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> object:
            if status == 200:
                return (await call(client, agent.url())).body
            with pytest.raises(RetryableAgentError) as caught:
                await call(client, agent.url())
            return caught.value.response

        body = run(scenario)
    assert body == {"text": deep.decode()}


def test_an_endless_header_is_refused_at_the_head_cap_and_the_connection_dropped() -> None:
    """An agent that never ends its header (here: up to 128 MiB of it) is an invalid answer once
    the status line and headers pass ``MAX_HEAD_BYTES``: the attempt fails then, long before
    its deadline, and the rest is never read (the agent can push only what the sockets'
    buffers hold before the connection is gone)."""
    offered = 128 << 20
    sent: list[int] = []
    ended = threading.Event()

    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        if received.connection > 0:
            writer.write(response())
            await writer.drain()
            return True
        writer.write(b"HTTP/1.1 200 OK\r\nX-Big: ")
        part = b"a" * 65536
        try:
            while sum(sent) < offered:
                writer.write(part)
                await writer.drain()
                sent.append(len(part))
        except ConnectionError:
            return False
        finally:
            ended.set()
        return False

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> None:
            message = f"invalid response: status line and headers over {MAX_HEAD_BYTES} bytes"
            with pytest.raises(RetryableAgentError, match=message):
                await call(client, agent.url(), timeout_s=20.0)
            await eventually(ended.is_set)  # the agent's writes failed: the connection is gone
            assert (await call(client, agent.url())).status_code == 200  # on a new connection

        run(scenario)
    assert sum(sent) < 64 * 1024 * 1024  # of the 128 MiB offered: socket buffers at most
    assert agent.accepts == 2


@pytest.mark.parametrize("split", [False, True], ids=["one-write", "head-in-pieces"])
def test_a_head_just_under_the_cap_is_read_with_its_body(split: bool) -> None:
    head = response(200, b'{"ok":true}', headers={"X-Big": "b" * (MAX_HEAD_BYTES - 200)})
    assert MAX_HEAD_BYTES - 200 < head.index(b"\r\n\r\n") + 4 <= MAX_HEAD_BYTES

    async def answer(received: Received, writer: asyncio.StreamWriter) -> bool:
        if split:  # the head in many reads, the body in the same write as its end
            cut = head.index(b"\r\n\r\n")
            for start in range(0, cut, 4096):
                writer.write(head[start : min(start + 4096, cut)])
                await writer.drain()
            writer.write(head[cut:])
        else:
            writer.write(head)
        await writer.drain()
        return True

    with RawAgent(answer) as agent:

        async def scenario(client: HttpAgentClient) -> object:
            return (await call(client, agent.url())).body

        assert run(scenario) == {"ok": True}
