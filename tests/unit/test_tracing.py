"""W3C trace context: continuing a valid traceparent, starting fresh on a bad one."""

from __future__ import annotations

import re

import pytest

from router_service.observability.tracing import TraceContext

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT_FORMAT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")


def test_valid_traceparent_keeps_trace_id_and_makes_a_new_span_id() -> None:
    ctx = TraceContext.from_header(f"00-{TRACE_ID}-{PARENT_ID}-01")
    assert ctx.trace_id == TRACE_ID
    assert ctx.span_id != PARENT_ID
    assert HEX16.match(ctx.span_id)
    assert ctx.sampled is True


def test_valid_traceparent_with_flags_00_is_not_sampled() -> None:
    ctx = TraceContext.from_header(f"00-{TRACE_ID}-{PARENT_ID}-00")
    assert ctx.trace_id == TRACE_ID
    assert ctx.sampled is False


def test_traceparent_with_surrounding_whitespace_is_continued() -> None:
    assert TraceContext.from_header(f"  00-{TRACE_ID}-{PARENT_ID}-01 ").trace_id == TRACE_ID


@pytest.mark.parametrize(
    "header",
    [
        f"ff-{TRACE_ID}-{PARENT_ID}-01",
        f"00-{'0' * 32}-{PARENT_ID}-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"00-{TRACE_ID}-{PARENT_ID}",
        f"00-{TRACE_ID[:-1]}-{PARENT_ID}-01",
        f"00-{TRACE_ID[:-1]}g-{PARENT_ID}-01",
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",
        f"0-{TRACE_ID}-{PARENT_ID}-01",
        "garbage",
    ],
    ids=[
        "version-ff",
        "zero-trace-id",
        "zero-parent-id",
        "missing-flags",
        "short-trace-id",
        "non-hex",
        "extra-field",
        "one-digit-version",
        "garbage",
    ],
)
def test_invalid_traceparent_starts_a_fresh_trace(header: str) -> None:
    ctx = TraceContext.from_header(header)
    assert HEX32.match(ctx.trace_id)
    assert ctx.trace_id != TRACE_ID
    assert set(ctx.trace_id) != {"0"}
    assert HEX16.match(ctx.span_id)


@pytest.mark.parametrize("header", [None, ""], ids=["absent", "empty"])
def test_absent_traceparent_starts_a_fresh_sampled_trace(header: str | None) -> None:
    ctx = TraceContext.from_header(header)
    assert HEX32.match(ctx.trace_id)
    assert HEX16.match(ctx.span_id)
    assert ctx.sampled is True


def test_fresh_traces_get_distinct_ids() -> None:
    first = TraceContext.from_header(None)
    second = TraceContext.from_header(None)
    assert first.trace_id != second.trace_id
    assert first.span_id != second.span_id


@pytest.mark.parametrize("sampled", [True, False])
def test_child_keeps_trace_id_and_sampling_with_a_new_span(sampled: bool) -> None:
    parent = TraceContext(TRACE_ID, PARENT_ID, sampled)
    child = parent.child()
    assert child.trace_id == TRACE_ID
    assert child.sampled is sampled
    assert child.span_id != PARENT_ID
    assert HEX16.match(child.span_id)


@pytest.mark.parametrize(("sampled", "flags"), [(True, "01"), (False, "00")])
def test_traceparent_is_version_00_with_trace_span_and_flags(sampled: bool, flags: str) -> None:
    ctx = TraceContext(TRACE_ID, PARENT_ID, sampled)
    assert ctx.traceparent == f"00-{TRACE_ID}-{PARENT_ID}-{flags}"
    assert TRACEPARENT_FORMAT.match(ctx.traceparent)


def test_generated_traceparent_is_continued_by_the_next_hop() -> None:
    ctx = TraceContext.from_header(None)
    assert TRACEPARENT_FORMAT.match(ctx.traceparent)
    assert TraceContext.from_header(ctx.traceparent).trace_id == ctx.trace_id
