"""W3C trace context: accept an incoming ``traceparent``, make one when absent.

Pure (stdlib only), so the service and the adapters pass it around without importing
observability; ``observability.tracing`` re-exports it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


# Ids must be unique, not secret: the module's generator (seeded from the OS, reseeded in a forked
# worker) is several times cheaper than a system call per id, and there are two ids a request.
def new_span_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"  # never all zeros, which W3C forbids


def new_trace_id() -> str:
    return f"{random.getrandbits(128) or 1:032x}"


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str
    span_id: str
    sampled: bool = True
    parent_id: str | None = None
    # Trace ids this trace is linked to (a replay links the original signal's trace).
    links: tuple[str, ...] = ()

    @classmethod
    def from_header(cls, header: str | None) -> TraceContext:
        """Continue the caller's trace when its header is valid; start a new one otherwise."""
        if header:
            match = _TRACEPARENT.match(header.strip())
            if match and match[1] != "ff" and set(match[2]) != {"0"} and set(match[3]) != {"0"}:
                sampled = int(match[4], 16) & 1 == 1
                return cls(match[2], new_span_id(), sampled, parent_id=match[3])
        return cls(new_trace_id(), new_span_id())

    def child(self) -> TraceContext:
        return TraceContext(
            self.trace_id, new_span_id(), self.sampled, parent_id=self.span_id, links=self.links
        )

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"
