"""Waiting on what a page shows, and photographing it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

T = TypeVar("T")


def until(probe: Callable[[], T | None], interval: float = 0.1) -> T:
    """`probe()` until it returns something: the tests wait on conditions, not on the clock
    (pytest-timeout ends a wait that never ends)."""
    while (found := probe()) is None:
        time.sleep(interval)
    return found


def found(browser: WebDriver, css: str) -> WebElement | None:
    """The element `css` names, or None while the page has none."""
    try:
        return browser.find_element(By.CSS_SELECTOR, css)
    except NoSuchElementException:
        return None


def gone(browser: WebDriver, css: str) -> bool | None:
    """True once the page has no element `css` names."""
    return True if found(browser, css) is None else None


def text_of(browser: WebDriver, css: str) -> str | None:
    """The text of the element `css` names, or None while there is none (or it is empty)."""
    try:
        element = found(browser, css)
        return element.text if element is not None and element.text else None
    except StaleElementReferenceException:
        return None


def photograph(browser: WebDriver, screenshots: Path, name: str) -> None:
    screenshots.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(screenshots / f"{name}.png"))
