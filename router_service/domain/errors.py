"""One exception root for everything the router raises on purpose.

::

    RouterError
    ├── ConfigError                 the routing file or the settings are wrong (start-up)
    │   └── ReloadRefused           422 routing_reload_refused (the active version stays)
    ├── BadRequest                  the client sent something we cannot accept   (4xx)
    │   ├── InvalidJson             400 invalid_json
    │   ├── UnsupportedMediaType    415 unsupported_media_type
    │   ├── PayloadTooLarge         413 payload_too_large
    │   ├── ValidationFailed        422 validation_error
    │   ├── IdempotencyKeyReused    422 idempotency_key_reused
    │   ├── RequestTimeout          408 request_timeout (the body arrived too slowly)
    │   └── ClientGone              400 client_gone (the connection closed mid-body; unread)
    ├── AuthError                   401 unauthorized
    │   ├── Forbidden               403 forbidden (the key lacks the endpoint's scope)
    │   └── TooManyAuthFailures     429 too_many_auth_failures (per client address)
    ├── SenderOverLimit             429 sender_over_limit (one sender has too many in flight)
    ├── TooManyReplayJobs           429 too_many_replay_jobs (this process runs all it may)
    ├── Overloaded                  503 overloaded (too many signals in flight; Retry-After)
    ├── NotFound                    404 not_found
    ├── Conflict                    409 in_progress (a duplicate of a signal still in flight)
    │   └── InvalidState            409 invalid_state (e.g. cancelling a finished replay job)
    ├── StorageError                the database failed
    │   ├── StorageUnavailable      503 database_unavailable
    │   └── SchemaOutOfDate         start-up refusal: migrations are behind
    └── AgentError                  one agent attempt failed (never reaches a client as such)
        ├── RetryableAgentError     connection error, timeout, 5xx, 408, 429
        └── PermanentAgentError     any other non-2xx; a JSON-RPC error; an A2A task that
            │                       failed, was rejected or cancelled
            └── AgentNeedsInput     an A2A task that wants input or auth (result needs_input)

Each client-facing class carries its HTTP ``status`` and snake_case ``code``; the API maps them
to a JSON body in exactly one place (``router_service.api.errors``).
"""

from __future__ import annotations

from typing import Any


class RouterError(Exception):
    """Root of every exception the router raises on purpose."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @property
    def headers(self) -> dict[str, str]:
        """Extra response headers (``Retry-After`` for the ones a client should retry)."""
        return {}


class _RetryLater:
    retry_after_s: int = 1

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class ConfigError(RouterError):
    """The routing file or a setting is invalid; the message names the file and the location."""

    code = "config_error"


class ReloadRefused(ConfigError):
    """A reload found the routing file invalid or failing its tests; the old version stays."""

    status = 422
    code = "routing_reload_refused"


class BadRequest(RouterError):
    status = 400
    code = "bad_request"


class InvalidJson(BadRequest):
    status = 400
    code = "invalid_json"


class UnsupportedMediaType(BadRequest):
    status = 415
    code = "unsupported_media_type"


class _CloseConnection:
    """The body was not read to its end, so the connection cannot carry another request."""

    @property
    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}


class PayloadTooLarge(_CloseConnection, BadRequest):
    status = 413
    code = "payload_too_large"


class ValidationFailed(BadRequest):
    status = 422
    code = "validation_error"


class IdempotencyKeyReused(BadRequest):
    status = 422
    code = "idempotency_key_reused"


class RequestTimeout(_CloseConnection, BadRequest):
    status = 408
    code = "request_timeout"


class ClientGone(_CloseConnection, BadRequest):
    """The connection closed while the body was being read: the answer reaches nobody."""

    status = 400
    code = "client_gone"


class AuthError(RouterError):
    status = 401
    code = "unauthorized"


class Forbidden(AuthError):
    status = 403
    code = "forbidden"


class TooManyAuthFailures(_RetryLater, AuthError):
    status = 429
    code = "too_many_auth_failures"
    retry_after_s = 60


class SenderOverLimit(_RetryLater, RouterError):
    """One sender has ``SENDER_MAX_IN_FLIGHT`` signals in flight; the others are untouched."""

    status = 429
    code = "sender_over_limit"


class TooManyReplayJobs(_RetryLater, RouterError):
    """This process already runs as many background replay jobs as it may at once."""

    status = 429
    code = "too_many_replay_jobs"
    retry_after_s = 10


class Overloaded(_RetryLater, RouterError):
    status = 503
    code = "overloaded"


class NotFound(RouterError):
    status = 404
    code = "not_found"


class Conflict(RouterError):
    status = 409
    code = "in_progress"


class InvalidState(Conflict):
    code = "invalid_state"


class StorageError(RouterError):
    status = 503
    code = "database_error"


class StorageUnavailable(StorageError):
    status = 503
    code = "database_unavailable"


class SchemaOutOfDate(StorageError):
    code = "schema_out_of_date"


class AgentError(RouterError):
    """One failed attempt at one agent."""

    code = "agent_error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        retry_after_s: float | None = None,
        response: Any = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.response = response


class RetryableAgentError(AgentError):
    code = "agent_retryable"


class PermanentAgentError(AgentError):
    code = "agent_permanent"


class AgentNeedsInput(PermanentAgentError):
    """The agent parked the task waiting for input or authentication: not delivered, not
    retried (re-sending cannot supply the input), recorded as the result ``needs_input``."""

    code = "agent_needs_input"

    def __init__(
        self,
        message: str,
        *,
        task_id: str | None,
        context_id: str | None,
        status_code: int | None = None,
        response: Any = None,
    ) -> None:
        super().__init__(message, status_code=status_code, response=response)
        self.task_id = task_id
        self.context_id = context_id
