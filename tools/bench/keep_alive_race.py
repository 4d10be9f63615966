"""The keep-alive race, provoked: ``python -m bench.keep_alive_race --url URL --idle S``.

A client that keeps a connection idle for about as long as the server keeps it open sends some
of its requests just as the server closes it; those are reset unread. Each of ``--connections``
connections sends ``GET /health/live``, waits ``--idle`` seconds (± ``--jitter``), and sends
again, ``--rounds`` times. Every send ends one of three ways:
- **answered**;
- **seen closed**: the server's close arrived before the send; the client reconnects, as a pool
  does, and nothing is lost;
- **reset**: the request went out on a connection the server was closing, and no answer came.
  A POST lost this way may or may not have been read; a client must resend it.

With ``--idle`` well under the router's ``KEEP_ALIVE_S`` no send is reset; around it, some are.
Loopback only; the run is bounded by its rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

REQUEST = b"GET /health/live HTTP/1.1\r\nHost: router\r\n\r\n"
ANSWER_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class RaceCount:
    answered: int
    seen_closed: int
    reset: int


async def _answer(reader: asyncio.StreamReader) -> bool:
    """Reads one response whole; False when the connection ends first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
    except (asyncio.IncompleteReadError, ConnectionError):
        return False
    return True


async def _connection(
    host: str, port: int, idle_s: float, jitter_s: float, rounds: int, rng: random.Random
) -> RaceCount:
    answered = seen_closed = reset = 0
    reader, writer = await asyncio.open_connection(host, port)
    for _ in range(rounds):
        if reader.at_eof():  # the close arrived while idle: reconnect, nothing lost
            seen_closed += 1
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
        writer.write(REQUEST)
        if await asyncio.wait_for(_answer(reader), ANSWER_TIMEOUT_S):
            answered += 1
        else:
            reset += 1
            writer.close()
            reader, writer = await asyncio.open_connection(host, port)
            continue  # a fresh connection: send at once
        await asyncio.sleep(idle_s + rng.uniform(-jitter_s, jitter_s))
    writer.close()
    return RaceCount(answered, seen_closed, reset)


async def race(
    url: str, *, connections: int, idle_s: float, jitter_s: float, rounds: int, seed: int = 1
) -> RaceCount:
    """Every connection's rounds, summed."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    rng = random.Random(seed)
    counts = await asyncio.gather(
        *(
            _connection(host, port, idle_s, jitter_s, rounds, random.Random(rng.random()))
            for _ in range(connections)
        )
    )
    return RaceCount(
        answered=sum(c.answered for c in counts),
        seen_closed=sum(c.seen_closed for c in counts),
        reset=sum(c.reset for c in counts),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.keep_alive_race", description=__doc__)
    parser.add_argument("--url", required=True, help="the router's base URL")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--idle", type=float, required=True, help="seconds idle between sends")
    parser.add_argument("--jitter", type=float, default=0.05, help="± seconds around --idle")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    count = asyncio.run(
        race(
            args.url,
            connections=args.connections,
            idle_s=args.idle,
            jitter_s=args.jitter,
            rounds=args.rounds,
        )
    )
    print(json.dumps(asdict(count)))


if __name__ == "__main__":
    main()
