"""The README's picture of the console, taken by the suite on a realistic page.

Every run takes it into the run's artifacts; ``make screenshot`` (``CONSOLE_SCREENSHOT=path``)
writes it where the README shows it, ``docs/console.png``.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import httpx
import pytest

from router_service.devtools.demo_agents import RunningAgents
from tests.browser.conftest import Console


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_readme_screenshot_shows_the_signals_page_with_traffic(
    console: Console,
    api: httpx.Client,
    agents: RunningAgents,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    senders = ["billing-bot", "pager", "web-form", "support-mail"]
    for n, kind in enumerate(["one", "chain", "fanout", "race", "one", "fanout", "chain"]):
        api.post("/route", json={"sender_id": senders[n % 4], "payload": {"route": kind}})
    agents.set("alpha", mode="fail", status=503)
    for n in range(2):
        api.post("/route", json={"sender_id": "pager", "payload": {"route": "one", "n": n}})
    agents.reset()
    console.sign_in("admin-key")
    console.wait(lambda: len(console.all("#signals-table tbody tr")) == 9)
    png = console.driver.get_screenshot_as_png()
    width, height = png_size(png)
    assert width >= 1200  # the browser's window, not an empty or clipped frame
    assert height >= 600
    target = os.environ.get("CONSOLE_SCREENSHOT")
    out = Path(target) if target else tmp_path_factory.mktemp("artifacts") / "console.png"
    out.write_bytes(png)
