"""The one place where exceptions become HTTP statuses and JSON error bodies."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from router_service.domain.errors import RouterError
from router_service.observability.logging import get_logger

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    body = {"error": {"code": code, "message": message}}
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


def describe_validation(errors: list[Any]) -> str:
    """'payload: Input should be a valid dictionary' for the first error, plus a count."""
    first = errors[0]
    location = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
    text = str(first.get("msg")).removeprefix("Value error, ")  # our own validators' words
    message = f"{location}: {text}" if location else text
    return message if len(errors) == 1 else f"{message} (and {len(errors) - 1} more)"


async def _router_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RouterError)
    if exc.status >= 500 and exc.status != 503:
        get_logger().error("request.failed", code=exc.code, error=exc.message)
    return error_response(exc.status, exc.code, exc.message, exc.headers or None)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, "validation_error", describe_validation(list(exc.errors())))


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, code, str(exc.detail), dict(exc.headers or {}))


async def _unexpected(_request: Request, exc: Exception) -> Response:
    get_logger().exception("request.crashed", error_type=type(exc).__name__)
    return error_response(500, "internal_error", "the router failed unexpectedly")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RouterError, _router_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
