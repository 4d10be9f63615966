"""The HTTP client to agents, and the wire format of ``protocol: http`` agents. Transport
failures become domain errors here.

The transport is :mod:`router_service.adapters.connection_pool` over
:mod:`router_service.adapters.http1` (keep-alive HTTP/1.1 on asyncio and httptools), chosen over
aiohttp because the agent call is on the hot path: see
docs/performance-analysis.md, "The agent client".
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from router_service.adapters.connection_pool import ConnectionPool
from router_service.adapters.http1 import (
    ConnectionFailed,
    Response,
    ResponseTooLarge,
    Target,
    parse_target,
)
from router_service.domain.errors import AgentError, PermanentAgentError, RetryableAgentError
from router_service.domain.retry import is_retryable_status
from router_service.domain.routing import AgentSpec
from router_service.domain.signal import format_timestamp
from router_service.jsonwire import dumps, loads, writable_depth
from router_service.observability.tracing import TraceContext
from router_service.service.ports import AgentReply, Envelope


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return max(0.0, (moment - datetime.now(UTC)).total_seconds())
    except Exception:
        # The date parser raises ValueError, TypeError, OverflowError (a year, day or zone of
        # 20 digits)...: whatever it is, a header we cannot read is a header we did not get.
        return None


def decode_body(raw: bytes, content_type: str) -> Any:
    """JSON when it parses and can be written again, else the text: an agent's odd answer is
    kept, not fatal."""
    if raw and ("json" in content_type or raw[:1] in (b"{", b"[")):
        try:
            value = loads(raw)  # exact integers: the answer is stored and echoed as sent
        except ValueError:
            pass
        else:
            if writable_depth(raw, value):
                return value
    return {"text": raw.decode("utf-8", "replace")} if raw else None


def http_body(envelope: Envelope) -> bytes:
    """The JSON an HTTP agent receives; the payload is spliced in as the canonical text."""
    head = dumps(
        {
            "log_id": envelope.log_id,
            "sender_id": envelope.sender_id,
            "kind": envelope.kind,
            "metadata": envelope.metadata,
            "timestamp": format_timestamp(envelope.timestamp),
        }
    )
    return head[:-1] + b',"payload":' + envelope.payload_json.encode() + b"}"


def delivery_headers(envelope: Envelope, span: TraceContext) -> dict[str, str]:
    """What every protocol sends: the idempotency key and the trace (same trace, new span)."""
    return {
        "Content-Type": "application/json",
        "Idempotency-Key": envelope.log_id,
        "traceparent": span.traceparent,
    }


class HttpAgentClient:
    """``AgentClient`` over pooled keep-alive connections; redirects are never followed.

    At most ``max_connections`` connections are open at once; an idle one is closed after
    ``idle_timeout_s`` (aiohttp's default, which this client replaced) or when the agent closes
    it. ``ssl_context`` defaults to the system's trust store.
    """

    _MAX_TARGETS = 1024  # parsed agent URLs kept; the routing file names far fewer

    def __init__(
        self,
        *,
        max_connections: int,
        max_response_bytes: int,
        max_idle_per_origin: int = 64,
        idle_timeout_s: float = 15.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._max_response_bytes = max_response_bytes
        self._pool = ConnectionPool(
            max_connections=max_connections,
            max_idle_per_origin=min(max_idle_per_origin, max_connections),
            idle_timeout_s=idle_timeout_s,
            max_body=max_response_bytes,
            ssl_context=ssl_context,
        )
        self._targets: dict[str, Target] = {}

    async def close(self) -> None:
        await self._pool.close()

    async def deliver(
        self, agent: AgentSpec, envelope: Envelope, span: TraceContext, timeout_s: float
    ) -> AgentReply:
        """``AgentClient`` for ``protocol: http``: our envelope, any 2xx is delivered."""
        body = envelope.encoded("http", http_body)
        return await self.call(agent, body, delivery_headers(envelope, span), timeout_s)

    async def call(
        self, agent: AgentSpec, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> AgentReply:
        """One POST of ``body``; a 2xx is the reply, anything else an agent error."""
        return _reply(await self.exchange(agent, body, headers, timeout_s))

    async def exchange(
        self, agent: AgentSpec, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> Response:
        """One POST, any status: transport failures become agent errors, nothing else does."""
        target = self._target(agent.url)
        try:
            request = target.encode(body, headers)
        except ValueError as exc:
            raise PermanentAgentError(f"request refused by the client: {exc}") from exc
        try:
            # One deadline for the whole attempt: connect, headers and every body byte.
            response = await self._pool.exchange(target, request, timeout_s)
        except TimeoutError as exc:
            raise RetryableAgentError(f"timed out after {timeout_s * 1000:.0f} ms") from exc
        except ResponseTooLarge as exc:
            raise PermanentAgentError(
                f"response larger than {self._max_response_bytes} bytes", status_code=exc.status
            ) from exc
        except ConnectionFailed as exc:
            if exc.reused and not exc.received:
                # The keep-alive race, most likely: worth another attempt at once, on a new
                # connection (no backoff). Still an attempt: the agent may have read it.
                raise RetryableAgentError(
                    f"connection error: {exc} (on a reused keep-alive connection)",
                    retry_after_s=0.0,
                ) from exc
            raise RetryableAgentError(f"connection error: {exc}") from exc
        except OSError as exc:  # refused, unreachable, DNS, TLS
            raise RetryableAgentError(f"connection error: {exc.strerror or exc}") from exc
        return response

    def discard(self, response: Response) -> None:
        """Never reuse the connection ``response`` came on (its answer was another request's)."""
        self._pool.discard(response)

    def _target(self, url: str) -> Target:
        target = self._targets.get(url)
        if target is None:
            try:
                target = parse_target(url)
            except ValueError as exc:  # the routing file validates URLs; this is a backstop
                raise PermanentAgentError(f"request refused by the client: {exc}") from exc
            if len(self._targets) >= self._MAX_TARGETS:
                self._targets.clear()
            self._targets[url] = target
        return target


def response_body(response: Response) -> Any:
    return decode_body(response.body, response.headers.get(b"content-type", b"").decode("latin-1"))


def _reply(response: Response) -> AgentReply:
    """A 2xx is the reply; anything else (3xx included) is an agent error, retryable or not."""
    payload = response_body(response)
    if 200 <= response.status < 300:
        return AgentReply(response.status, payload)
    raise status_error(response, payload)


def status_error(response: Response, payload: Any) -> AgentError:
    """A non-2xx answer as the agent error it is: retryable (with ``Retry-After``) or not."""
    headers = response.headers
    status = response.status
    message = f"HTTP {status}"
    if is_retryable_status(status):
        retry_after = headers.get(b"retry-after")
        return RetryableAgentError(
            message,
            status_code=status,
            retry_after_s=parse_retry_after(retry_after.decode("latin-1") if retry_after else None),
            response=payload,
        )
    return PermanentAgentError(message, status_code=status, response=payload)
