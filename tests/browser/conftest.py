"""Browser tests: the router and real demo agents on loopback, and headless Chromium from the
system's packages driven by Selenium. Nothing is downloaded: the driver is given by path, so
Selenium Manager never runs. A missing browser fails the tests; it never skips them.

On a failure, every page the test saw is saved as a PNG under the run's temporary directory
(``.../artifacts/<test>/``), and the directory is printed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from router_service.devtools.demo_agents import RunningAgents
from tests.conftest import make_settings
from tests.support.db import wipe
from tests.support.server import RouterServer

CHROMIUM = Path(os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1360,900",
)
KEYS = "admin:admin-key,reader:reader-key:logs:read,sender:route-key:route"
FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    report = yield
    if getattr(report, "when", "") == "call" and getattr(report, "failed", False):
        item.stash[FAILED] = True
    return report


def start_browser(profile: Path) -> WebDriver:
    for needed in (CHROMIUM, CHROMEDRIVER):
        if not needed.is_file():
            pytest.fail(f"{needed} is missing: install Debian's chromium and chromium-driver")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    # An explicit driver path: Selenium Manager (which could download one) is never invoked.
    return webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)


class Console:
    """One browser on the console, keeping a screenshot of every page it shows."""

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url
        self.shots: list[tuple[str, bytes]] = []

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)
        self.snap(path)

    def snap(self, label: str) -> None:
        self.shots.append((label, self.driver.get_screenshot_as_png()))

    def text(self, css: str) -> str:
        return str(self.driver.find_element(By.CSS_SELECTOR, css).text)

    def all(self, css: str) -> list[WebElement]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def wait(self, condition: Callable[[], object], timeout_s: float = 20, what: str = "") -> None:
        # Auto-refreshing pages replace their elements: a stale one is looked up again.
        WebDriverWait(
            self.driver,
            timeout_s,
            poll_frequency=0.1,
            ignored_exceptions=(StaleElementReferenceException, NoSuchElementException),
        ).until(lambda _driver: condition(), what)

    def click(self, css: str) -> None:
        def clicked() -> bool:
            self.driver.find_element(By.CSS_SELECTOR, css).click()
            return True

        self.wait(clicked, what=f"clicking {css}")
        self.snap(f"after clicking {css}")

    def sign_in(self, key: str) -> None:
        self.open("/console/sign-in")
        self.driver.find_element(By.ID, "api-key").send_keys(key)
        self.click("#sign-in")

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.snap("at failure")
        for index, (label, png) in enumerate(self.shots):
            name = "".join(c if c.isalnum() else "-" for c in label).strip("-")[:60]
            (directory / f"{index:02d}-{name or 'page'}.png").write_bytes(png)


@pytest.fixture(scope="module")
def router(database_url: str, routing_file: Path) -> Iterator[RouterServer]:
    settings = make_settings(
        database_url, routing_file, api_key=None, api_keys=KEYS, console_sample_interval_s=0.5
    )
    with RouterServer(settings) as server:
        yield server


@pytest.fixture
def api(router: RouterServer, agents: RunningAgents, database_url: str) -> Iterator[httpx.Client]:
    """Obliging agents and empty tables for each test, and an admin client of the API."""
    agents.reset()
    wipe(database_url)
    with httpx.Client(
        base_url=router.base_url, headers={"X-API-Key": "admin-key"}, timeout=30
    ) as http:
        yield http


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    browser = start_browser(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def console(
    request: pytest.FixtureRequest,
    driver: WebDriver,
    router: RouterServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Console]:
    driver.get(router.base_url + "/console/sign-in")  # cookies are cleared per site
    driver.delete_all_cookies()
    page = Console(driver, router.base_url)
    yield page
    if request.node.stash.get(FAILED, False):
        where = tmp_path_factory.getbasetemp() / "artifacts" / request.node.name
        page.save(where)
        sys.stderr.write(f"screenshots of every page of {request.node.name}: {where}\n")
