"""The console's error pages: a refused form or a missing page, shown as a page of the console
with the reason and a way back, where the API answers JSON. The API's error handlers
(``api/errors.py``) ask ``error_page`` first; it answers only under /console (its static files
excepted), so every other path keeps the API's JSON errors."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from router_service.console.access import PREFIX, session_of
from router_service.console.pages import render

_STATIC = PREFIX + "/static/"
# The page each part of the console goes back to; a replay job's own actions go back to it.
_SECTIONS = ("signals", "dead-letters", "rules", "health")
_HEADINGS = {
    401: "Sign in first",
    403: "Not allowed",
    404: "Not found",
    409: "Not now",
    413: "Too large",
    415: "Not a form",
    422: "Refused",
    429: "Busy",
    503: "Unavailable",
}


def error_page(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> Response | None:
    """``message`` as a console page with ``status``, or None outside the console."""
    path = request.url.path
    if not path.startswith(PREFIX + "/") or path.startswith(_STATIC):
        return None
    if getattr(request.app.state, "console", None) is None:
        return None  # not serving yet (the lifespan sets the console's state)
    session = session_of(request)
    return render(
        request,
        "error.html",
        session,
        status,
        headers,
        status=status,
        heading=_HEADINGS.get(status, "Not done"),
        message=message,
        back=way_back(path) if session is not None else PREFIX + "/sign-in",
    )


def way_back(path: str) -> str:
    """The console page a request to ``path`` came from or belongs to."""
    parts = path.removeprefix(PREFIX + "/").split("/")
    if parts[0] == "replays" and len(parts) > 1 and parts[1].isascii() and parts[1].isdigit():
        return f"{PREFIX}/replays/{parts[1]}"
    if parts[0] in _SECTIONS:
        return f"{PREFIX}/{parts[0]}"
    return f"{PREFIX}/dead-letters" if parts[0] == "replays" else f"{PREFIX}/signals"
