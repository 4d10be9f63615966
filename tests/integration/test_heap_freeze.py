"""The heap loaded at start-up is out of the cyclic collector's full passes while the router
serves (``gc.freeze``), and collectable again once it stops."""

from __future__ import annotations

import gc
from pathlib import Path

from tests.conftest import make_settings
from tests.support.server import RouterServer


def test_the_startup_heap_is_frozen_while_serving_and_released_after(
    migrated: object, routing_file: Path
) -> None:
    gc.unfreeze()
    server = RouterServer(make_settings(migrated("sqlite"), routing_file)).start()  # type: ignore[operator]
    try:
        frozen = gc.get_freeze_count()
    finally:
        server.stop()
    assert frozen > 10_000  # the modules, settings and clients of the running server
    assert gc.get_freeze_count() == 0
