"""Headless Chromium for page tests: Debian's ``chromium`` driven by Playwright's Python API.

Playwright never downloads a browser here: it launches the system Chromium
(``.ci/run`` installs Debian's package when it is missing). Tests that need a browser
call ``require_browser()``, which skips with the reason when none can be had.
"""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import pytest

# Without the background-networking flags Chromium keeps dialling out, which this
# closed network refuses; --no-sandbox because CI runs as root.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    return None


def require_browser() -> str:
    """The Chromium executable, or skip the test with the reason."""
    path = chromium_path()
    if path is None:
        pytest.skip("headless Chromium is not installed (Debian package 'chromium'; .ci/run installs it)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("the Python package 'playwright' is not installed (pip install -e .[test])")
    return path


@dataclass
class PageErrors:
    """JavaScript errors and failed requests seen while the page was open."""

    console: list[str] = field(default_factory=list)
    page: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    @property
    def all(self) -> list[str]:
        return [*self.page, *self.console, *self.requests]


@contextmanager
def open_page(url: str, width: int = 1400, height: int = 1000, wait_until: str = "load") -> Iterator:
    """Yield ``(page, errors)`` for ``url`` in a fresh headless Chromium."""
    from playwright.sync_api import sync_playwright

    executable = require_browser()
    errors = PageErrors()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.on("console", lambda m: errors.console.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: errors.page.append(str(exc)))
            page.on("requestfailed", lambda r: errors.requests.append(f"{r.url}: {r.failure}"))
            page.goto(url, wait_until=wait_until)
            yield page, errors
        finally:
            browser.close()


def is_blank(png_path) -> bool:
    """True when a screenshot has a single colour (nothing rendered)."""
    from PIL import Image  # pillow comes with torchvision

    with Image.open(png_path) as image:
        extrema = image.convert("L").getextrema()
    return extrema[0] == extrema[1]
