"""The HTTP client to agents (aiohttp). Transport failures become domain errors here."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
import orjson

from router_service.domain.errors import PermanentAgentError, RetryableAgentError
from router_service.domain.retry import is_retryable_status
from router_service.domain.routing import AgentSpec
from router_service.service.ports import AgentReply


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


def decode_body(raw: bytes, content_type: str) -> Any:
    """JSON when it parses, else the text: an agent's odd answer is kept, not fatal."""
    if raw and ("json" in content_type or raw[:1] in (b"{", b"[")):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return {"text": raw.decode("utf-8", "replace")} if raw else None


class HttpAgentClient:
    """``AgentClient`` over one pooled aiohttp session; redirects are never followed."""

    def __init__(self, *, max_connections: int, max_response_bytes: int) -> None:
        self._max_response_bytes = max_response_bytes
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max_connections, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=None),
            skip_auto_headers=("User-Agent",),
            json_serialize=lambda v: orjson.dumps(v).decode(),
        )

    async def close(self) -> None:
        await self._session.close()

    async def call(
        self, agent: AgentSpec, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> AgentReply:
        try:
            # One deadline for the whole attempt: connect, headers and every body byte.
            async with asyncio.timeout(timeout_s):
                return await self._attempt(agent, body, headers)
        except TimeoutError as exc:
            raise RetryableAgentError(f"timed out after {timeout_s * 1000:.0f} ms") from exc
        except aiohttp.ClientError as exc:
            raise RetryableAgentError(f"connection error: {type(exc).__name__}") from exc
        except OSError as exc:
            raise RetryableAgentError(f"connection error: {exc.strerror or exc}") from exc
        except ValueError as exc:  # aiohttp refuses a request it considers malformed
            raise PermanentAgentError(f"request refused by the client: {exc}") from exc

    async def _attempt(
        self, agent: AgentSpec, body: bytes, headers: Mapping[str, str]
    ) -> AgentReply:
        async with self._session.post(
            agent.url, data=body, headers=dict(headers), allow_redirects=False
        ) as response:
            raw = await self._read_capped(response)
            payload = decode_body(raw, response.headers.get("Content-Type", ""))
            status = response.status
            if 200 <= status < 300:
                return AgentReply(status, payload)
            message = f"HTTP {status}"
            if is_retryable_status(status):
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                raise RetryableAgentError(
                    message, status_code=status, retry_after_s=retry_after, response=payload
                )
            raise PermanentAgentError(message, status_code=status, response=payload)

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > self._max_response_bytes:
                raise PermanentAgentError(
                    f"response larger than {self._max_response_bytes} bytes",
                    status_code=response.status,
                )
            chunks.append(chunk)
        return b"".join(chunks)
