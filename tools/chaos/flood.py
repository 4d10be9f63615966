"""The hostile clients of the flood scenario, in their own process so they do not share the
control client's event loop: ``python -m chaos.flood --port P --seconds S ... --out FILE``.

- ``bodies``: POST /route declaring ``Content-Length: 100 MB`` and streaming it;
- ``chunked``: POST /route with ``Transfer-Encoding: chunked`` and no end;
- ``slow``: connections sending the request headers one byte at a time (slowloris).

Each worker reconnects until the time is up and records what the server did: the status it
answered, how many bytes it let us send first, and when it closed the connection. The flood
comes from an address of its own (``FLOOD_ADDRESS``, this machine's too), as a hostile client
would: the router holds one client to ``MAX_CONNECTIONS_PER_CLIENT``, and the control client
must not be counted with it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

HUGE = 100 * 1024 * 1024
CHUNK = b"a" * 65536
WRITE_STALL_S = 5.0
SLOW_BYTE_EVERY_S = 0.2
FLOOD_ADDRESS = "127.0.0.66"


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, local_addr=(FLOOD_ADDRESS, 0))


@dataclass
class Attempt:
    status: str  # an HTTP status, or "closed", "reset", "stalled", "open"
    sent: int = 0
    seconds: float = 0.0


@dataclass
class Tally:
    attempts: list[Attempt] = field(default_factory=list)

    def summary(self, kind: str) -> dict[str, Any]:
        statuses = Counter(a.status for a in self.attempts)
        listed = ", ".join(f"{n}x {s}" for s, n in statuses.most_common())
        if kind == "slow":
            closed = [a.seconds for a in self.attempts if a.status != "open"]
            median = f"{statistics.median(closed):.1f} s" if closed else "never"
            text = (
                f"{len(self.attempts)} connections; closed by the server: {len(closed)} "
                f"(median after {median}); outcomes {listed}"
            )
        else:
            sent = [a.sent for a in self.attempts] or [0]
            took = [a.seconds for a in self.attempts] or [0.0]
            text = (
                f"{len(self.attempts)} requests, answers {listed}; median "
                f"{statistics.median(sent) / 1e6:.2f} MB sent before the answer, "
                f"in {statistics.median(took) * 1000:.0f} ms"
            )
        return {"summary": text, "statuses": dict(statuses), "count": len(self.attempts)}


def _head(api_key: str, framing: str) -> bytes:
    return (
        "POST /route HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"X-API-Key: {api_key}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    ).encode()


def _status(line: bytes) -> str:
    parts = line.split()
    return parts[1].decode() if len(parts) >= 2 and parts[1].isdigit() else "closed"


async def _body(port: int, api_key: str, chunked: bool, end: float) -> Attempt:
    started = time.monotonic()
    reader, writer = await _connect(port)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {HUGE}"
    answer = asyncio.create_task(reader.readline())
    sent = 0
    outcome = ""
    try:
        writer.write(_head(api_key, framing))
        while sent < HUGE and not answer.done() and time.monotonic() < end + WRITE_STALL_S:
            writer.write(b"10000\r\n" + CHUNK + b"\r\n" if chunked else CHUNK)
            try:
                await asyncio.wait_for(writer.drain(), WRITE_STALL_S)
            except TimeoutError:
                outcome = "stalled"  # the server stopped reading and did not answer
                break
            sent += len(CHUNK)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(answer), WRITE_STALL_S)
    except (ConnectionError, OSError):
        outcome = "reset"
    finally:
        writer.transport.abort()
    if answer.done() and not answer.cancelled() and answer.exception() is None:
        outcome = _status(answer.result())
    else:
        answer.cancel()
        with contextlib.suppress(BaseException):
            await answer
    return Attempt(outcome or "closed", sent, time.monotonic() - started)


async def _slow(port: int, api_key: str, end: float) -> Attempt:
    started = time.monotonic()
    reader, writer = await _connect(port)
    request = _head(api_key, "Content-Length: 2") + b"{}"
    index = 0
    try:
        while time.monotonic() < end:
            if index < len(request):
                writer.write(request[index : index + 1])
                index += 1
            try:
                data = await asyncio.wait_for(reader.read(1024), SLOW_BYTE_EVERY_S)
            except TimeoutError:
                continue
            status = _status(data.split(b"\r\n", 1)[0]) if data else "closed"
            return Attempt(status, index, time.monotonic() - started)
    except (ConnectionError, OSError):
        return Attempt("reset", index, time.monotonic() - started)
    finally:
        writer.transport.abort()
    return Attempt("open", index, time.monotonic() - started)


async def _worker(tally: Tally, end: float, make: Any) -> None:
    while time.monotonic() < end:
        try:
            tally.attempts.append(await make())
        except (ConnectionError, OSError):
            tally.attempts.append(Attempt("refused"))
            await asyncio.sleep(0.1)  # the server refuses connections: do not spin


async def flood(args: argparse.Namespace) -> dict[str, Any]:
    api_key = os.environ.get("CHAOS_API_KEY", "")
    end = time.monotonic() + args.seconds
    tallies = {"bodies": Tally(), "chunked": Tally(), "slow": Tally()}
    workers = [
        *(
            _worker(tallies["bodies"], end, lambda: _body(args.port, api_key, False, end))
            for _ in range(args.bodies)
        ),
        *(
            _worker(tallies["chunked"], end, lambda: _body(args.port, api_key, True, end))
            for _ in range(args.chunked)
        ),
        *(
            _worker(tallies["slow"], end, lambda: _slow(args.port, api_key, end))
            for _ in range(args.slow)
        ),
    ]
    await asyncio.gather(*workers)
    return {kind: tally.summary(kind) for kind, tally in tallies.items()}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m chaos.flood")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--bodies", type=int, default=10)
    parser.add_argument("--chunked", type=int, default=5)
    parser.add_argument("--slow", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.write_bytes(orjson.dumps(asyncio.run(flood(args)), option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
