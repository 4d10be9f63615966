"""W3C trace context: accept an incoming ``traceparent``, make one when absent."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def new_span_id() -> str:
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str
    sampled: bool = True
    parent_id: str | None = None

    @classmethod
    def from_header(cls, header: str | None) -> TraceContext:
        """Continue the caller's trace when its header is valid; start a new one otherwise."""
        if header:
            match = _TRACEPARENT.match(header.strip())
            if match and match[1] != "ff" and set(match[2]) != {"0"} and set(match[3]) != {"0"}:
                sampled = int(match[4], 16) & 1 == 1
                return cls(match[2], new_span_id(), sampled, parent_id=match[3])
        return cls(secrets.token_hex(16), new_span_id())

    def child(self) -> TraceContext:
        return TraceContext(self.trace_id, new_span_id(), self.sampled, parent_id=self.span_id)

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"
