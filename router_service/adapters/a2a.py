"""The client to Agent2Agent (A2A) agents: JSON-RPC 2.0 over the lean HTTP/1.1 transport.

One attempt is one blocking ``SendMessage`` (A2A 1.0) or ``message/send`` (0.3). The message id
is the signal's ``log_id``, so a re-send (retry, replay, crash recovery) is recognisably the same
message; the payload travels as a data part, plus a text part when it has a ``message`` string;
``sender_id``, ``kind`` and ``trace_id`` travel in the message's metadata. The headers are the
HTTP agents' ones (``Idempotency-Key``, ``traceparent``) plus ``A2A-Version``.

What comes back becomes a domain verdict here (docs/delivery.md has the table):

==========================================  ================================================
HTTP 2xx, ``result`` is a message           delivered
HTTP 2xx, task ``completed``                delivered
HTTP 2xx, task ``failed/rejected/canceled``  ``PermanentAgentError`` (dead letter)
HTTP 2xx, task ``input/auth-required``      ``AgentNeedsInput`` (result ``needs_input``)
HTTP 2xx, task still ``submitted/working``  ``RetryableAgentError`` (try later)
HTTP 2xx, task with no state we can read    ``PermanentAgentError`` (``unreadable A2A task``:
                                            no status, a state that is not a string,
                                            ``unknown``/``unspecified``, an undefined state)
HTTP 2xx with a JSON-RPC ``error`` object   ``PermanentAgentError`` (servers do this); its
                                            text is capped, the whole answer is kept
HTTP 2xx, not JSON-RPC, an ``error`` that   ``PermanentAgentError``
is not an object, or duplicate JSON keys
HTTP 2xx, another request's ``id``          ``RetryableAgentError`` (invalid response; the
                                            connection is closed, never reused)
transport failure, 5xx, 408, 429            ``RetryableAgentError`` (as for HTTP agents)
any other non-2xx                           ``PermanentAgentError``
==========================================  ================================================
"""

from __future__ import annotations

import json
from typing import Any, Final

from router_service.adapters.agents import (
    HttpAgentClient,
    delivery_headers,
    response_body,
    status_error,
)
from router_service.domain.errors import (
    AgentNeedsInput,
    PermanentAgentError,
    RetryableAgentError,
)
from router_service.domain.routing import AgentSpec
from router_service.domain.signal import format_timestamp
from router_service.jsonwire import dumps
from router_service.observability.tracing import TraceContext
from router_service.service.ports import AgentReply, Envelope

DEFAULT_VERSION: Final = "1.0"
_DELIVERED: Final = frozenset({"completed"})
_REFUSED: Final = frozenset({"failed", "rejected", "canceled", "cancelled"})
_NEEDS_INPUT: Final = frozenset({"input-required", "auth-required"})
_IN_PROGRESS: Final = frozenset({"submitted", "working"})
_SHOWN_ID: Final = 64  # characters of a foreign id quoted in the error
_SHOWN_VALUE: Final = 64  # characters of an unreadable value quoted in the error
# An error's text quotes the agent (a JSON-RPC error message, task ids): capped, as the log caps
# a field (``observability.logging.MAX_FIELD_CHARS``); the whole answer is kept in ``response``.
MAX_ERROR_CHARS: Final = 512


class ForeignAnswer(RetryableAgentError):
    """A JSON-RPC answer whose ``id`` is not the request's: an invalid response, as if the
    transport had garbled it (and its content, another request's, is not kept)."""


def send_message_request(envelope: Envelope, version: str, trace_id: str) -> bytes:
    """The JSON-RPC request of one signal in the given A2A version."""
    payload = envelope.payload
    text = payload.get("message") if isinstance(payload, dict) else None
    metadata = {
        "sender_id": envelope.sender_id,
        "kind": envelope.kind,
        "trace_id": trace_id,
        "timestamp": format_timestamp(envelope.timestamp),
    }
    if version == "0.3":
        parts: list[dict[str, Any]] = [{"kind": "data", "data": payload}]
        if isinstance(text, str):
            parts.insert(0, {"kind": "text", "text": text})
        message = {"kind": "message", "role": "user", "messageId": envelope.log_id}
        method, configuration = "message/send", {"blocking": True}
    else:
        parts = [{"data": payload, "mediaType": "application/json"}]
        if isinstance(text, str):
            parts.insert(0, {"text": text})
        message = {"role": "ROLE_USER", "messageId": envelope.log_id}
        method, configuration = "SendMessage", {"returnImmediately": False}
    params: dict[str, Any] = {"message": {**message, "parts": parts, "metadata": metadata}}
    params["configuration"] = configuration
    return dumps({"jsonrpc": "2.0", "id": envelope.log_id, "method": method, "params": params})


class _DuplicateKey(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> None:
    if len({key for key, _ in pairs}) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)


# Only the keys are checked: the values are read (exactly) by ``decode_body``.
_KEYS_ONLY: Final = json.JSONDecoder(object_pairs_hook=_unique)


def duplicate_key(raw: bytes) -> str | None:
    """The first key that an object of the JSON ``raw`` repeats; None when none does (or when
    ``raw`` is not JSON). orjson keeps the last of them, so ``{"id":"x","id":"<ours>"}`` would
    pass the request-id check: an ambiguous answer is refused instead."""
    if b'"' not in raw:
        return None
    try:
        _KEYS_ONLY.decode(raw.decode("utf-8"))
    except _DuplicateKey as exc:
        return str(exc.args[0])
    except (ValueError, RecursionError):
        return None  # not JSON (or too deep to write): ``decode_body`` keeps it as text
    return None


def capped(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text``, cut to ``limit`` characters (an ellipsis ending it) when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(value: Any) -> str:
    """A value of the answer as JSON spells it, capped."""
    return capped(dumps(value).decode(), _SHOWN_VALUE)


def task_state(task: dict[str, Any]) -> str | None:
    """``TASK_STATE_INPUT_REQUIRED`` (1.0) and ``input-required`` (0.3) both become the latter;
    None when the task has no state that is a string."""
    status = task.get("status")
    state = status.get("state") if isinstance(status, dict) else None
    if not isinstance(state, str):
        return None
    state = state.lower().removeprefix("task_state_")
    return state.replace("_", "-")


def _unreadable_task(task: dict[str, Any]) -> str:
    """What ``task_state`` could not read, or the state that is no verdict, for the error."""
    if "status" not in task:
        return "no status"
    status = task["status"]
    if not isinstance(status, dict):
        return f"status {_shown(status)} is not an object"
    if "state" not in status:
        return "no status.state"
    state = status["state"]
    if not isinstance(state, str):
        return f"status.state {_shown(state)} is not a string"
    return f"state {_shown(state)}"  # unknown, unspecified, or no state A2A defines


def _task_or_message(result: Any) -> tuple[str, dict[str, Any]] | None:
    """``("task" | "message", object)`` from a 1.0 or 0.3 result; None when it is neither."""
    if not isinstance(result, dict):
        return None
    for key in ("task", "message"):  # 1.0: SendMessageResponse wraps one of them
        inner = result.get(key)
        if isinstance(inner, dict):
            return key, inner
    kind = result.get("kind")  # 0.3: the object itself, tagged by ``kind``
    if kind in ("task", "message"):
        return str(kind), result
    if "status" in result and "id" in result:
        return "task", result
    if "parts" in result and "role" in result:
        return "message", result
    return None


def interpret(status_code: int, body: Any, request_id: str) -> AgentReply:
    """The verdict on a 2xx JSON-RPC answer to the request ``request_id``: a reply
    (delivered), or the agent error it is."""
    if not isinstance(body, dict) or body.get("jsonrpc") != "2.0":
        raise PermanentAgentError(
            "not a JSON-RPC 2.0 response", status_code=status_code, response=body
        )
    error = body.get("error")
    answer_id = body.get("id")
    # JSON-RPC 2.0: the answer carries the request's id; null only in an error about a request
    # the server could not read.
    if answer_id != request_id and not (answer_id is None and error is not None):
        shown = repr(answer_id)
        shown = shown if len(shown) <= _SHOWN_ID else shown[: _SHOWN_ID - 3] + "..."
        raise ForeignAnswer(
            f"invalid response: JSON-RPC id {shown} is not this request's",
            status_code=status_code,
        )
    if error is not None:
        if not isinstance(error, dict):
            raise PermanentAgentError(
                f"not a JSON-RPC 2.0 response: error {_shown(error)} is not an object",
                status_code=status_code,
                response=body,
            )
        code, text = error.get("code"), error.get("message")
        raise PermanentAgentError(
            capped(f"JSON-RPC error {code}: {text}"), status_code=status_code, response=body
        )
    result = body.get("result")
    found = _task_or_message(result)
    if found is None:
        raise PermanentAgentError(
            "JSON-RPC result is neither a task nor a message",
            status_code=status_code,
            response=result,
        )
    what, item = found
    if what == "message":
        return AgentReply(status_code, result)
    return _task_verdict(status_code, result, item)


def _task_verdict(status_code: int, result: Any, task: dict[str, Any]) -> AgentReply:
    """The verdict on a ``result`` that holds ``task``: by its state."""
    state = task_state(task)
    if state in _DELIVERED:
        return AgentReply(status_code, result)
    if state in _REFUSED:
        raise PermanentAgentError(f"A2A task {state}", status_code=status_code, response=result)
    task_id, context_id = task.get("id"), task.get("contextId")
    if state in _NEEDS_INPUT:
        raise AgentNeedsInput(
            capped(f"needs_input: A2A task {state} (taskId={task_id}, contextId={context_id})"),
            task_id=task_id if isinstance(task_id, str) else None,
            context_id=context_id if isinstance(context_id, str) else None,
            status_code=status_code,
            response=result,
        )
    if state in _IN_PROGRESS:
        raise RetryableAgentError(
            f"A2A task still {state} when the blocking call returned",
            status_code=status_code,
            response=result,
        )
    # Re-sending would repeat the message to an agent that may well have taken it.
    raise PermanentAgentError(
        f"unreadable A2A task: {_unreadable_task(task)}",
        status_code=status_code,
        response=result,
    )


class A2aAgentClient:
    """``AgentClient`` for ``protocol: a2a``, sharing the HTTP client's connection pool."""

    def __init__(self, transport: HttpAgentClient) -> None:
        self._transport = transport

    async def deliver(
        self, agent: AgentSpec, envelope: Envelope, span: TraceContext, timeout_s: float
    ) -> AgentReply:
        version = agent.a2a_version or DEFAULT_VERSION
        body = envelope.encoded(
            f"a2a/{version}", lambda e: send_message_request(e, version, span.trace_id)
        )
        headers = {**delivery_headers(envelope, span), "A2A-Version": version}
        response = await self._transport.exchange(agent, body, headers, timeout_s)
        payload = response_body(response)
        if not 200 <= response.status < 300:
            raise status_error(response, payload)  # 5xx/408/429 retryable, as for HTTP agents
        key = duplicate_key(response.body)
        if key is not None:
            # Which id it answers cannot be told either: the connection goes, as for a foreign one.
            self._transport.discard(response)
            raise PermanentAgentError(
                f"not a JSON-RPC 2.0 response: duplicate JSON object key {_shown(key)}",
                status_code=response.status,
                response={"text": response.body.decode("utf-8", "replace")},
            )
        try:
            return interpret(response.status, payload, envelope.log_id)
        except ForeignAnswer:
            # The connection is out of step (our answer may follow on it): never reuse it.
            self._transport.discard(response)
            raise
