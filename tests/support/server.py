"""A router under test: the real app, served by uvicorn on a pre-bound loopback socket."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import httpx
import uvicorn

from router_service.api.app import create_app
from router_service.api.protocol import GuardedHttpProtocol
from router_service.config.settings import Settings


class RouterServer:
    """Runs ``create_app(settings)`` in a thread; the socket listens before the thread starts,
    so the first request simply waits in the backlog until the app is up (no polling)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(512)
        self.port = self._sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.app,
            lifespan="on",
            log_level="warning",
            access_log=False,
            loop="asyncio",
            http=GuardedHttpProtocol,
            proxy_headers=False,  # as `serve` runs it: TRUSTED_PROXIES decides
        )
        self._server = uvicorn.Server(config)
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # surfaced by start()
            self._failed = exc

    def start(self) -> RouterServer:
        self._thread.start()
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            client.get("/health/live").raise_for_status()
        return self

    def __enter__(self) -> RouterServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._sock.close()

    @property
    def server_state(self) -> Any:
        """uvicorn's: the open connections (protocol objects), the requests served."""
        return self._server.server_state

    @property
    def services(self) -> Any:
        return self.app.state.services
