"""The operator console, served by the router at /console: server-rendered pages (Jinja2, with
autoescape), a little progressive enhancement from one static script, no build step and nothing
fetched from elsewhere.

``install_console(app)`` adds its routes and its static files; the app adds ``ConsoleHeaders``
(its security headers) outside every other middleware, gives ``error_page`` to its error
handlers (a refusal under /console is a page of the console, not JSON), and its lifespan runs
``running_console`` beside the router's services.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from router_service.console.access import ConsoleHeaders
from router_service.console.actions import actions
from router_service.console.errors import error_page
from router_service.console.pages import pages
from router_service.console.state import running_console

__all__ = ["ConsoleHeaders", "error_page", "install_console", "running_console"]


def install_console(app: FastAPI) -> None:
    app.include_router(pages)
    app.include_router(actions)
    static = StaticFiles(packages=[("router_service.console", "static")])
    app.mount("/console/static", static, name="console-static")
