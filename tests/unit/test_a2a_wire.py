"""The A2A wire format and mapping table, as pure functions: request shape per version, and
every kind of answer to the verdict docs/delivery.md promises."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from router_service.adapters.a2a import (
    MAX_ERROR_CHARS,
    duplicate_key,
    interpret,
    send_message_request,
    task_state,
)
from router_service.adapters.a2a_card import card_urls, check_card
from router_service.domain.errors import (
    AgentNeedsInput,
    PermanentAgentError,
    RetryableAgentError,
)
from router_service.domain.routing import AgentProtocol, AgentSpec
from router_service.service.ports import Envelope


def envelope(payload: dict[str, Any]) -> Envelope:
    return Envelope(
        log_id="L1",
        sender_id="s1",
        kind="billing",
        payload=payload,
        payload_json=orjson.dumps(payload).decode(),
        metadata={},
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
    )


def rpc(**outcome: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": "L1", **outcome}


def test_request_1_0_has_text_and_data_parts_and_metadata() -> None:
    body = orjson.loads(send_message_request(envelope({"message": "hi", "n": 1}), "1.0", "T"))
    assert body["method"] == "SendMessage"
    assert body["id"] == "L1"
    message = body["params"]["message"]
    assert message["messageId"] == "L1"
    assert message["parts"] == [
        {"text": "hi"},
        {"data": {"message": "hi", "n": 1}, "mediaType": "application/json"},
    ]
    assert message["metadata"] == {
        "sender_id": "s1",
        "kind": "billing",
        "trace_id": "T",
        "timestamp": "2026-01-01T00:00:00.000000Z",
    }


def test_request_0_3_and_no_text_part_without_a_message_string() -> None:
    body = orjson.loads(send_message_request(envelope({"message": 5}), "0.3", "T"))
    assert body["method"] == "message/send"
    assert body["params"]["message"]["parts"] == [{"kind": "data", "data": {"message": 5}}]
    assert body["params"]["configuration"] == {"blocking": True}


@pytest.mark.parametrize(
    "result",
    [
        {"message": {"role": "ROLE_AGENT", "parts": []}},
        {"kind": "message", "role": "agent", "parts": []},
        {"task": {"id": "t", "status": {"state": "TASK_STATE_COMPLETED"}}},
        {"kind": "task", "id": "t", "status": {"state": "completed"}},
    ],
)
def test_a_message_or_a_completed_task_is_delivered_unchanged(result: dict[str, Any]) -> None:
    reply = interpret(200, rpc(result=result), "L1")
    assert reply.body == result


@pytest.mark.parametrize("state", ["failed", "rejected", "canceled"])
@pytest.mark.parametrize("v1", [True, False])
def test_refused_tasks_are_permanent(state: str, v1: bool) -> None:
    task = {"id": "t", "status": {"state": f"TASK_STATE_{state.upper()}" if v1 else state}}
    with pytest.raises(PermanentAgentError) as info:
        interpret(200, rpc(result={"task": task} if v1 else {"kind": "task", **task}), "L1")
    assert not isinstance(info.value, AgentNeedsInput)
    assert info.value.message == f"A2A task {state}"


@pytest.mark.parametrize("state", ["TASK_STATE_INPUT_REQUIRED", "auth-required"])
def test_a_task_wanting_input_is_needs_input_with_its_ids(state: str) -> None:
    task = {"id": "t1", "contextId": "c1", "status": {"state": state}}
    with pytest.raises(AgentNeedsInput) as info:
        interpret(200, rpc(result={"task": task}), "L1")
    assert (info.value.task_id, info.value.context_id) == ("t1", "c1")
    assert info.value.message.startswith("needs_input: A2A task ")


def test_a_task_still_working_is_retryable() -> None:
    working = {"task": {"id": "t", "status": {"state": "TASK_STATE_WORKING"}}}
    with pytest.raises(RetryableAgentError):
        interpret(200, rpc(result=working), "L1")


@pytest.mark.parametrize(
    "body",
    [
        rpc(error={"code": -32603, "message": "boom"}),
        {"text": "hello"},  # not JSON-RPC
        rpc(result={"something": "else"}),
        rpc(result=None),
    ],
)
def test_errors_and_non_answers_are_permanent(body: dict[str, Any]) -> None:
    with pytest.raises(PermanentAgentError) as info:
        interpret(200, body, "L1")
    assert not isinstance(info.value, AgentNeedsInput)


@pytest.mark.parametrize(
    "body",
    [
        {"jsonrpc": "2.0", "id": "another", "result": {"message": {"role": "ROLE_AGENT"}}},
        {"jsonrpc": "2.0", "result": {"kind": "message", "role": "agent", "parts": []}},
        {"jsonrpc": "2.0", "id": None, "result": {"message": {"role": "ROLE_AGENT"}}},
        {"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "boom"}},
    ],
    ids=["other-id", "no-id", "null-id-result", "other-id-error"],
)
def test_an_answer_that_is_not_to_this_request_is_an_invalid_response(
    body: dict[str, Any],
) -> None:
    with pytest.raises(RetryableAgentError, match="invalid response: JSON-RPC id") as info:
        interpret(200, body, "L1")
    assert info.value.response is None  # another request's answer is not kept


def test_a_null_id_error_answers_a_request_the_server_could_not_read() -> None:
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
    with pytest.raises(PermanentAgentError, match="JSON-RPC error -32700: parse error"):
        interpret(200, body, "L1")


def test_task_state_spellings() -> None:
    assert task_state({"status": {"state": "TASK_STATE_AUTH_REQUIRED"}}) == "auth-required"
    assert task_state({"status": {"state": "input-required"}}) == "input-required"
    assert task_state({"status": "weird"}) is None  # not the state 0.3 calls "unknown"
    assert task_state({"status": {"state": "unknown"}}) == "unknown"


@pytest.mark.parametrize(
    ("task", "error"),
    [
        ({"id": "t"}, "unreadable A2A task: no status"),
        (
            {"id": "t", "status": "completed"},
            'unreadable A2A task: status "completed" is not an object',
        ),
        ({"id": "t", "status": {}}, "unreadable A2A task: no status.state"),
        (
            {"id": "t", "status": {"state": 3}},
            "unreadable A2A task: status.state 3 is not a string",
        ),
        (
            {"id": "t", "status": {"state": "TASK_STATE_UNKNOWN"}},
            'unreadable A2A task: state "TASK_STATE_UNKNOWN"',
        ),
        (
            {"id": "t", "status": {"state": "TASK_STATE_UNSPECIFIED"}},
            'unreadable A2A task: state "TASK_STATE_UNSPECIFIED"',
        ),
        (
            {"kind": "task", "id": "t", "status": {"state": "unknown"}},
            'unreadable A2A task: state "unknown"',
        ),
        ({"id": "t", "status": {"state": "paused"}}, 'unreadable A2A task: state "paused"'),
        (
            {"id": "t", "status": {"state": "x" * 100_000}},
            'unreadable A2A task: state "' + "x" * 62 + "…",
        ),
    ],
    ids=[
        "no-status",
        "status-string",
        "no-state",
        "state-number",
        "unknown-1.0",
        "unspecified",
        "unknown-0.3",
        "undefined",
        "long",
    ],
)
def test_a_task_without_a_state_to_act_on_is_permanent_and_says_what(
    task: dict[str, Any], error: str
) -> None:
    result = task if "kind" in task else {"task": task}
    with pytest.raises(PermanentAgentError) as info:
        interpret(200, rpc(result=result), "L1")
    assert not isinstance(info.value, AgentNeedsInput)
    assert info.value.message == error
    assert info.value.response == result  # the whole answer is kept


@pytest.mark.parametrize(
    ("state", "shown"),
    [("TASK_STATE_SUBMITTED", "submitted"), ("submitted", "submitted"), ("working", "working")],
)
def test_a_task_submitted_or_working_stays_retryable(state: str, shown: str) -> None:
    task = {"id": "t", "status": {"state": state}}
    with pytest.raises(RetryableAgentError) as info:
        interpret(200, rpc(result={"task": task}), "L1")
    assert info.value.message == f"A2A task still {shown} when the blocking call returned"


def test_a_huge_json_rpc_error_message_is_capped_in_the_error_not_in_the_response() -> None:
    body = rpc(error={"code": -32000, "message": "m" * 900_000})
    with pytest.raises(PermanentAgentError) as info:
        interpret(200, body, "L1")
    message = info.value.message
    assert len(message) == MAX_ERROR_CHARS
    assert message.startswith("JSON-RPC error -32000: mmm")
    assert message.endswith("…")
    assert info.value.response == body


def test_a_huge_task_id_is_capped_in_a_needs_input_error_not_in_the_result() -> None:
    task = {"id": "t" * 900_000, "contextId": "c1", "status": {"state": "input-required"}}
    with pytest.raises(AgentNeedsInput) as info:
        interpret(200, rpc(result={"task": task}), "L1")
    assert len(info.value.message) == MAX_ERROR_CHARS
    assert info.value.task_id == task["id"]


@pytest.mark.parametrize(
    ("error", "shown"), [(False, "false"), (0, "0"), ("boom", '"boom"'), ([], "[]")]
)
def test_an_error_that_is_not_an_object_says_so(error: Any, shown: str) -> None:
    completed = {"task": {"id": "t", "status": {"state": "TASK_STATE_COMPLETED"}}}
    with pytest.raises(PermanentAgentError) as info:
        interpret(200, rpc(error=error, result=completed), "L1")
    assert info.value.message == f"not a JSON-RPC 2.0 response: error {shown} is not an object"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"jsonrpc":"2.0","id":"wrong","id":"L1","result":{}}', "id"),
        (b'{"a":{"state":"failed","state":"completed"}}', "state"),
        (b'[{"k":1},{"k":2,"k":3}]', "k"),
        (b'{"a":1,"b":{"a":2}}', None),  # the same key in two objects is no duplicate
        (rb'{"\u0069d":1,"id":2}', "id"),  # spelled differently, read the same
        (b"not json", None),
        (b"", None),
    ],
)
def test_duplicate_key_finds_a_key_an_object_repeats(raw: bytes, key: str | None) -> None:
    assert duplicate_key(raw) == key


A2A = AgentSpec("x", "http://h:1/a2a/x", protocol=AgentProtocol.A2A, a2a_version="1.0")
A2A_03 = AgentSpec("x", "http://h:1/x", protocol=AgentProtocol.A2A, a2a_version="0.3")


def test_card_urls_look_beside_the_endpoint_then_at_the_root() -> None:
    assert card_urls("http://h:1/a2a/x", "1.0") == [
        "http://h:1/a2a/x/.well-known/agent-card.json",
        "http://h:1/.well-known/agent-card.json",
    ]
    assert card_urls("http://h:1/x", "0.3")[2:] == [
        "http://h:1/x/.well-known/agent.json",
        "http://h:1/.well-known/agent.json",
    ]


def test_card_1_0_must_offer_jsonrpc_at_the_url_in_the_version() -> None:
    def card(url: str, version: str, binding: str = "JSONRPC") -> dict[str, Any]:
        interface = {"url": url, "protocolBinding": binding, "protocolVersion": version}
        return {"supportedInterfaces": [interface]}

    assert check_card(A2A, card("http://h:1/a2a/x", "1.0")) == ("1.0", None)
    assert check_card(A2A, card("http://h:1/a2a/x", "0.3"))[1] == (
        "the card offers version 0.3, not 1.0"
    )
    assert check_card(A2A, card("http://h:1/other", "1.0"))[1] == (
        "no JSONRPC interface at http://h:1/a2a/x"
    )
    assert check_card(A2A, card("http://h:1/a2a/x", "1.0", "GRPC"))[1] is not None


def test_card_0_3_checks_url_transport_and_version() -> None:
    good = {"url": "http://h:1/x", "protocolVersion": "0.3.0", "preferredTransport": "JSONRPC"}
    assert check_card(A2A_03, good) == ("0.3.0", None)
    assert check_card(A2A_03, good | {"protocolVersion": "0.2.5"})[1] == (
        "the card says version 0.2.5, not 0.3"
    )
    assert check_card(A2A_03, good | {"preferredTransport": "GRPC"})[1] is not None
    extra = {"additionalInterfaces": [{"url": "http://h:1/x", "transport": "JSONRPC"}]}
    assert check_card(A2A_03, good | {"preferredTransport": "GRPC"} | extra)[1] is None
