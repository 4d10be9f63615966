"""Reading a JSON request body: media type, streamed size limit, strict JSON, nesting depth."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from router_service.api.errors import describe_validation
from router_service.api.protocol import BODY_DEADLINE
from router_service.domain.errors import (
    ClientGone,
    InvalidJson,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    ValidationFailed,
)
from router_service.jsonwire import check_depth, holds_lone_surrogate, within_limits_by_size

M = TypeVar("M", bound=BaseModel)


def _reject_constant(name: str) -> Any:
    raise InvalidJson(f"{name} is not valid JSON")


# Python refuses to turn longer digit strings into an int (sys.int_info.default_max_str_digits):
# such a number could be neither hashed into the log_id nor echoed back.
MAX_INT_DIGITS = 4300


def _exact_int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > MAX_INT_DIGITS:
        raise ValidationFailed(f"a JSON integer has {digits} digits; at most {MAX_INT_DIGITS}")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):
        shown = text if len(text) <= 32 else text[:29] + "..."
        raise ValidationFailed(f"the JSON number {shown} is too large for a double")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InvalidJson(f"duplicate object key {key[:64]!r}")
            seen.add(key)
    return result


def check_media_type(request: Request) -> None:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    structured = media.startswith("application/") and media.endswith("+json")
    if media != "application/json" and not structured:
        raise UnsupportedMediaType("Content-Type must be application/json")


@dataclass(frozen=True, slots=True)
class BodyLimits:
    max_bytes: int = 256 * 1024
    max_depth: int = 32
    max_string_chars: int = 0  # 0: bounded by max_bytes alone
    max_array_items: int = 0
    timeout_s: float = 10.0


async def read_body(request: Request, limits: BodyLimits) -> bytes:
    """The body, refused with 413 as soon as it is known to be too large (never all read),
    and with 408 when it does not arrive within the body timeout: timed by the HTTP protocol
    when it says so (``protocol.BODY_DEADLINE``), else here."""
    max_bytes = limits.max_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"body larger than {max_bytes} bytes")
    if BODY_DEADLINE in request.scope.get("extensions", ()):
        return await _read(request, max_bytes)
    try:
        async with asyncio.timeout(limits.timeout_s):
            return await _read(request, max_bytes)
    except TimeoutError as exc:
        raise RequestTimeout(f"body not received within {limits.timeout_s:g} s") from exc


async def _read(request: Request, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"body larger than {max_bytes} bytes")
            chunks.append(chunk)
    except ClientDisconnect as exc:
        # Closed by the client, or by the protocol when the body was too slow (it has answered
        # 408 already): nobody is left to read this answer, and it is no failure of ours.
        raise ClientGone("the connection closed before the body was complete") from exc
    return b"".join(chunks)


# The decoder json.loads would build on every call with these options.
_STRICT = json.JSONDecoder(
    object_pairs_hook=_unique_keys,
    parse_constant=_reject_constant,
    parse_int=_exact_int,
    parse_float=_finite_float,
)


def parse_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate keys, no lone surrogates; numbers a
    double or an int can hold exactly as written (422 naming the number otherwise)."""
    try:
        text = raw.decode("utf-8")
        if text.startswith("\ufeff"):  # as json.loads refuses it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _STRICT.decode(text)
    except UnicodeDecodeError as exc:
        raise InvalidJson("body is not UTF-8") from exc
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise InvalidJson(f"body is not valid JSON: {exc.msg} at {where}") from exc
    except RecursionError as exc:
        raise ValidationFailed("JSON nesting is too deep") from exc
    if holds_lone_surrogate(text, value):
        raise InvalidJson("body contains a lone UTF-16 surrogate")
    return value


def validate(model: type[M], value: Any) -> M:
    if not isinstance(value, dict):
        raise ValidationFailed("body must be a JSON object")
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ValidationFailed(describe_validation(list(exc.errors()))) from exc


def parse_within(raw: bytes, limits: BodyLimits) -> Any:
    """Strict JSON (``parse_json``) within the body's limits: nesting, strings, arrays."""
    value = parse_json(raw)
    bounds = (limits.max_depth, limits.max_string_chars, limits.max_array_items)
    if not within_limits_by_size(raw, *bounds):
        check_depth(value, *bounds)
    return value


async def read_model(request: Request, model: type[M], limits: BodyLimits) -> M:
    check_media_type(request)
    raw = await read_body(request, limits)
    return validate(model, parse_within(raw, limits))
