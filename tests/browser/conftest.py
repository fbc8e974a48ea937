"""A phone-sized headless Chromium (Debian's `chromium` and `chromium-driver`) driven by
Selenium; the pages of web/ served as static files alone, or behind the edge of a platform as
`make run` starts it (the e2e tests' RunningPlatform, with free ports for the edge too).

Screenshots go to the test run's temporary folder (`screenshots/` under pytest's basetemp), one
per page and state, at 360x780 CSS pixels: what a reviewer looks at.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

TESTS = Path(__file__).resolve().parents[1]
WEB = TESTS.parent / "web"
PHONE_WIDTH, PHONE_HEIGHT = 360, 780
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--lang=zh-CN",
)


def _found(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: apt-get install chromium chromium-driver")
    return path


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = _found("chromium")
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    # The phone's viewport in CSS pixels, whatever the window decorations take.
    options.add_experimental_option(
        "mobileEmulation",
        {"deviceMetrics": {"width": PHONE_WIDTH, "height": PHONE_HEIGHT, "pixelRatio": 1.0}},
    )
    driver = webdriver.Chrome(options=options, service=Service(_found("chromedriver")))
    driver.set_script_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.getbasetemp() / "screenshots"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def static_pages() -> Iterator[str]:
    """web/ over HTTP on 127.0.0.1 (a secure context, so the pages may use crypto.subtle)."""
    handler = functools.partial(_QuietHandler, directory=str(WEB))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _e2e_conftest():
    """The e2e tests' platform launcher (tests/e2e/conftest.py), loaded by path: a conftest
    is not importable by name from another folder."""
    spec = importlib.util.spec_from_file_location("e2e_platform", TESTS / "e2e" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# A test city: votes open at once and may be closed before their period ends.
PLATFORM_ENV = {"WUYE_VOTE_NOTICE_DAYS": "0", "WUYE_VOTE_ALLOW_EARLY_CLOSE": "true"}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory):
    """The platform as `make run` starts it, its edge serving the pages."""
    launcher = _e2e_conftest()
    # Waited on as a condition, like everything here: on shared cores eight services may take
    # longer to start than the e2e tests' own limit (pytest-timeout still ends a hang).
    launcher.STARTUP_TIMEOUT_SECONDS = float("inf")
    running = launcher.RunningPlatform(
        tmp_path_factory.mktemp("pages-platform") / "state",
        ("--edge-port", "0", "--edge-admin-port", "0"),
        env=PLATFORM_ENV,
    ).wait_until_ready()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def edge(platform) -> str:
    return f"http://{platform.description['edge']['address']}"
