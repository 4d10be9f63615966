"""The one place where exceptions become HTTP statuses and JSON error bodies: FastAPI's
handlers, the fast path of ``POST /route`` (``middleware.py``) and the refusals the HTTP protocol
writes itself before a request exists (``protocol.py``) all come here."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from router_service.domain.errors import RouterError
from router_service.observability.logging import get_logger

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request"}

# A page for an error, where a path wants one (the console's), else None: the JSON error.
ErrorPage = Callable[[Request, int, str, "dict[str, str] | None"], "Response | None"]


def error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(error_body(code, message), status, headers, media_type="application/json")


def raw_refusal(status: int, reason: str, code: str, message: str) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, for the protocol to write when no
    request (and no app) is there to answer: headers too slow or too large."""
    body = error_body(code, message)
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def response_for(exc: Exception) -> Response:
    """A ``RouterError`` as its own status, code and message; anything else is a 500 that says
    nothing of its cause (the cause goes to the log)."""
    status, code, message, headers = _described(exc)
    return error_response(status, code, message, headers)


def _described(exc: Exception) -> tuple[int, str, str, dict[str, str] | None]:
    """What an error answers (status, code, message, headers), logged when it is the router's
    own failure."""
    if isinstance(exc, RouterError):
        if exc.status >= 500 and exc.status != 503:
            get_logger().error("request.failed", code=exc.code, error=exc.message)
        return exc.status, exc.code, exc.message, exc.headers or None
    get_logger().exception("request.crashed", error_type=type(exc).__name__)
    return 500, "internal_error", "the router failed unexpectedly", None


def describe_validation(errors: list[Any]) -> str:
    """'payload: Input should be a valid dictionary' for the first error, plus a count."""
    first = errors[0]
    location = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
    text = str(first.get("msg")).removeprefix("Value error, ")  # our own validators' words
    message = f"{location}: {text}" if location else text
    return message if len(errors) == 1 else f"{message} (and {len(errors) - 1} more)"


def install_error_handlers(app: FastAPI, page: ErrorPage | None = None) -> None:
    """FastAPI's handlers: JSON errors, or ``page``'s answer where it gives one."""

    def answer(
        request: Request, status: int, code: str, message: str, headers: dict[str, str] | None
    ) -> Response:
        shown = page(request, status, message, headers) if page is not None else None
        return shown or error_response(status, code, message, headers)

    async def router_error(request: Request, exc: Exception) -> Response:
        return answer(request, *_described(exc))

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        message = describe_validation(list(exc.errors()))
        return answer(request, 422, "validation_error", message, None)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        return answer(request, exc.status_code, code, str(exc.detail), headers)

    app.add_exception_handler(RouterError, router_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, router_error)
