"""The recording client and the demo agents' control: what chaos sends and what agents received.

Every ``/route`` request carries an explicit ``log_id`` and a fresh ``traceparent`` of its own, so
an agent receipt names the client request that caused it (the router continues the caller's
trace). Every answer is kept, whatever it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from chaos.invariants import ACKNOWLEDGED, Answer, Receipt
from chaos.procs import API_KEY

CLIENT_TIMEOUT_S = 30.0
SENDER = "chaos"


@dataclass(frozen=True, slots=True)
class Signal:
    """What one client wants routed; resent unchanged (same log_id, same payload) on retry."""

    log_id: str
    payload: dict[str, Any]
    mode: str | None = None
    sender: str = SENDER

    def body(self) -> bytes:
        body: dict[str, Any] = {
            "log_id": self.log_id,
            "sender_id": self.sender,
            "payload": self.payload,
        }
        if self.mode is not None:
            body["mode"] = self.mode
        return orjson.dumps(body)


def _error_code(raw: bytes) -> str | None:
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
        code = decoded["error"].get("code")
        return code if isinstance(code, str) else None
    return None


@dataclass
class Recorder:
    """Sends signals and records every answer (``answers``) in order of completion."""

    session: aiohttp.ClientSession
    answers: list[Answer] = field(default_factory=list)

    async def route(
        self, base_url: str, signal: Signal, *, target: str, timeout_s: float = CLIENT_TIMEOUT_S
    ) -> Answer:
        trace_id = secrets.token_hex(16)
        headers = {
            "X-API-Key": API_KEY,
            "Content-Type": "application/json",
            "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01",
        }
        started = time.time()
        status, code, error, replayed, retry_after = 0, None, None, False, None
        try:
            async with self.session.post(
                f"{base_url}/route",
                data=signal.body(),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout_s),
            ) as response:
                raw = await response.read()
                status = response.status
                code = _error_code(raw) if status >= 400 else None
                replayed = response.headers.get("Idempotent-Replayed") == "true"
                retry_after = response.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:160]
        answer = Answer(
            log_id=signal.log_id,
            status=status,
            trace_id=trace_id,
            started=started,
            ended=time.time(),
            code=code,
            error=error,
            target=target,
            replayed=replayed,
            retry_after=retry_after,
        )
        self.answers.append(answer)
        return answer

    def acknowledged(self) -> set[str]:
        return {a.log_id for a in self.answers if a.status in ACKNOWLEDGED}

    def settled(self) -> set[str]:
        """Log ids with a final answer: acknowledged, or refused for good (a 4xx but 409)."""
        final = {a.log_id for a in self.answers if 400 <= a.status < 500 and a.status != 409}
        return self.acknowledged() | final


# A pooled connection idle this long is closed by the client, well before the router's own idle
# limits (KEEP_ALIVE_S between requests, HEADER_TIMEOUT_S=2 in chaos for a new connection): a
# client that reuses a connection the server is closing gets a reset for a request the server
# never saw, which is the client's race, not a fault.
CLIENT_IDLE_S = 1.0


def session() -> aiohttp.ClientSession:
    """No limit on connections (scenarios decide concurrency), short keep-alive."""
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=CLIENT_IDLE_S)
    return aiohttp.ClientSession(connector=connector)


async def send_all(
    recorder: Recorder,
    signals: Sequence[Signal],
    pick: Callable[[int], tuple[str, str]],
    concurrency: int,
) -> list[Answer]:
    """Send ``signals`` with at most ``concurrency`` in flight; ``pick(i)`` -> (name, base URL)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, signal: Signal) -> Answer:
        async with gate:
            target, base_url = pick(index)
            return await recorder.route(base_url, signal, target=target)

    return list(await asyncio.gather(*(one(i, s) for i, s in enumerate(signals))))


async def steady_load(
    recorder: Recorder,
    make: Callable[[int], Signal],
    pick: Callable[[int], tuple[str, str]],
    *,
    rate_per_s: float,
    stop: asyncio.Event,
    max_requests: int,
    max_in_flight: int = 200,
) -> int:
    """Open-loop load: one new signal every 1/rate s until ``stop`` is set (bounded in count)."""
    tasks: set[asyncio.Task[Answer]] = set()
    gate = asyncio.Semaphore(max_in_flight)
    interval = 1.0 / rate_per_s
    next_at = time.monotonic()
    sent = 0

    async def one(index: int) -> Answer:
        async with gate:
            target, base_url = pick(index)
            return await recorder.route(base_url, make(index), target=target)

    while not stop.is_set() and sent < max_requests:
        task = asyncio.create_task(one(sent))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
        next_at += interval
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(0.0, next_at - time.monotonic()))
    if tasks:
        await asyncio.gather(*tasks)
    return sent


async def settle(
    recorder: Recorder,
    signals: Sequence[Signal],
    pick: Callable[[int], tuple[str, str]],
    timeout_s: float,
    pause_s: float = 0.5,
    concurrency: int = 32,
) -> float | None:
    """Resend every signal not settled yet (as a careful client would: same log_id and payload)
    until all are, or ``timeout_s`` passes. Returns the seconds it took, None on time-out."""
    started = time.monotonic()
    give_up = started + timeout_s
    attempt = 0
    while time.monotonic() < give_up:
        pending = [s for s in signals if s.log_id not in recorder.settled()]
        if not pending:
            return time.monotonic() - started
        attempt += 1
        await send_all(recorder, pending, _shifted(pick, attempt), concurrency)
        if all(s.log_id in recorder.settled() for s in pending):
            continue
        await asyncio.sleep(pause_s)  # a client's back-off between retries, not synchronisation
    return None


def _shifted(pick: Callable[[int], tuple[str, str]], by: int) -> Callable[[int], tuple[str, str]]:
    """The same round robin, started one further: a retry goes to another replica."""
    return lambda index: pick(index + by)


async def poll(
    condition: Callable[[], Awaitable[bool]], timeout_s: float, every_s: float = 0.2
) -> float | None:
    """Seconds until ``condition()`` held, or None if it did not within ``timeout_s``."""
    started = time.monotonic()
    give_up = started + timeout_s
    while True:
        if await condition():
            return time.monotonic() - started
        if time.monotonic() >= give_up:
            return None
        await asyncio.sleep(every_s)


# --------------------------------------------------------------------------- demo agents

SUCCESS_MODES = frozenset({"ok", "slow", "non_json"})


@dataclass(frozen=True, slots=True)
class ModeChange:
    agent: str
    at: float
    effect: bool


@dataclass
class Agents:
    """The demo-agent server's control API, and the effect timeline of every agent."""

    session: aiohttp.ClientSession
    base_url: str
    changes: list[ModeChange] = field(default_factory=list)

    def url(self, name: str) -> str:
        return f"{self.base_url}/agents/{name}"

    async def set(self, name: str, *, effect: bool | None = None, **behaviour: Any) -> None:
        """Set ``name``'s behaviour; ``effect`` says whether its receipts are done work (default:
        it answers success). Set modes while no traffic flows, so each receipt has one mode."""
        mode = behaviour.get("mode", "ok")
        self.changes.append(
            ModeChange(name, time.time(), mode in SUCCESS_MODES if effect is None else effect)
        )
        async with self.session.put(f"{self.base_url}/_control/{name}", json=behaviour) as reply:
            if reply.status != 200:
                raise RuntimeError(f"demo agents refused {behaviour}: {await reply.text()}")

    def effect_at(self, agent: str, at: float) -> bool:
        effect = True  # every agent starts answering ok
        for change in self.changes:
            if change.agent == agent and change.at <= at:
                effect = change.effect
        return effect

    async def received(self, name: str) -> list[dict[str, Any]]:
        async with self.session.get(f"{self.base_url}/_received/{name}") as reply:
            items: list[dict[str, Any]] = (await reply.json())["items"]
            return items

    async def wait_received(self, name: str, count: int, timeout_s: float) -> int:
        """Hold until ``name`` received ``count`` requests (the server waits); returns the count."""
        query = f"?wait_for={count}&timeout_ms={int(timeout_s * 1000)}"
        timeout = aiohttp.ClientTimeout(total=timeout_s + 5)
        url = f"{self.base_url}/_received/{name}{query}"
        async with self.session.get(url, timeout=timeout) as reply:
            return int((await reply.json())["count"])

    async def receipts(self, names: Sequence[str]) -> list[Receipt]:
        found: list[Receipt] = []
        for name in names:
            for item in await self.received(name):
                found.append(self._receipt(name, item))
        return found

    def _receipt(self, name: str, item: dict[str, Any]) -> Receipt:
        headers = item.get("headers") or {}
        body = item.get("body")
        traceparent = headers.get("traceparent") or ""
        parts = traceparent.split("-")
        at = float(item.get("received_at") or 0.0)
        return Receipt(
            agent=name,
            key=headers.get("idempotency-key"),
            body_log_id=body.get("log_id") if isinstance(body, dict) else None,
            trace_id=parts[1] if len(parts) == 4 else None,
            at=at,
            effect=self.effect_at(name, at),
        )
