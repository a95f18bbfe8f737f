"""Real headless Chromium (Debian's `chromium`, never `playwright install`) against the server."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import require
from tests.support import REPO, LiveServer

CHROMIUM = Path(os.environ.get("TASKDASH_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = REPO / "artifacts" / "screenshots"
Shoot = Callable[[Page, str], Path]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/browser/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.browser)


# Module scope: the sync API runs its own event loop, which must be gone before async tests run.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing: install Debian's chromium package")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(chromium: Browser, server: LiveServer) -> Iterator[Page]:
    context = chromium.new_context(
        base_url=server.base_url, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(20_000)
    browser_page = context.new_page()
    errors: list[str] = []
    browser_page.on("pageerror", lambda error: errors.append(str(error)))
    yield browser_page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture()
def shoot(request: pytest.FixtureRequest) -> Shoot:
    """Save a full-page screenshot under artifacts/screenshots/ (CI keeps them as artifacts)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    test = re.sub(r"[^A-Za-z0-9_]+", "-", request.node.name).strip("-")

    def save(page: Page, label: str) -> Path:
        path = SCREENSHOTS / f"{test}--{label}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
