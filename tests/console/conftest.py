"""The console's browser tests: a real server, Debian's Chromium, driven by Playwright.

Each test gets a fresh browser context (its own cookies) already signed in, except where it
signs in through the page itself. Every request the page makes is recorded: a test fails if
the page asked any host but the server, or threw an uncaught error.

``SCREENSHOTS_DIR=docs/screenshots pytest tests/console`` saves each page's picture there
(``make screenshots``); otherwise ``shot`` does nothing. ``CONSOLE_DIST=FOLDER`` tests another
build of the console than the package's (``CUMULO_CONSOLE_OUT=FOLDER npx vite build``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.services import Cumulo, start_cumulo

ROOT = Path(__file__).resolve().parents[2]
DIST = Path(os.environ.get("CONSOLE_DIST") or ROOT / "src" / "cumulo" / "console" / "dist")
BUILT = DIST / "index.html"
# Without these, Chromium reaches for Google's hosts at start (this machine has no network).
QUIET = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--disable-dev-shm-usage"]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    raise RuntimeError("Chromium is not installed: 'make test' installs it (apt-get install "
                       "chromium)")


@pytest.fixture(scope="package")
def rest(console_server: Cumulo) -> Iterator[httpx.Client]:
    """The REST API as the admin, for setting things up and checking them."""
    with httpx.Client(base_url=console_server.url + "/api/v1", timeout=60,
                      headers={"authorization": f"Bearer {console_server.token}"}) as client:
        yield client


# Package scope, not session: Playwright's sync API keeps an asyncio loop running in this
# thread while it is open, and later packages' asyncio.run() would refuse to start.
@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    if not BUILT.is_file():
        raise RuntimeError(f"the console is not built ({BUILT} is missing): run 'make console'")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=QUIET)
        yield browser
        browser.close()


@pytest.fixture(scope="package")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cumulo]:
    """One server for all the console's tests (each test names its own things)."""
    home = tmp_path_factory.mktemp("console") / ".cumulo"
    cumulo = start_cumulo(home, {"CUMULO_CONSOLE_DIR": str(DIST), "CUMULO_SERVING_PRELOAD": "1"})
    yield cumulo
    cumulo.stop()


def _context(browser: object, server: Cumulo, *, signed_in: bool, mobile: bool = False):  # type: ignore[no-untyped-def]
    viewport = {"width": 390, "height": 844} if mobile else {"width": 1366, "height": 860}
    context = browser.new_context(base_url=server.url, viewport=viewport,  # type: ignore[attr-defined]
                                  accept_downloads=True)
    context.set_default_timeout(20_000)
    if signed_in:
        context.add_cookies([{"name": "cumulo_token", "value": server.token,
                              "url": server.url, "httpOnly": True, "sameSite": "Strict"}])
    return context


class Watched:
    """A page and what it did: the hosts it asked and the errors it threw."""

    def __init__(self, page, server: Cumulo) -> None:  # type: ignore[no-untyped-def]
        self.page = page
        self.server = urlsplit(server.url).netloc
        self.foreign: list[str] = []
        self.errors: list[str] = []
        page.on("request", self._request)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _request(self, request) -> None:  # type: ignore[no-untyped-def]
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != self.server:
            self.foreign.append(request.url)

    def check(self) -> None:
        assert not self.foreign, f"the console asked hosts other than the server: {self.foreign}"
        assert not self.errors, f"the page threw: {self.errors}"


@contextmanager
def _watched(browser: object, server: Cumulo, **options: bool) -> Iterator[object]:
    context = _context(browser, server, **options)
    watched = Watched(context.new_page(), server)
    yield watched.page
    context.close()
    watched.check()


@pytest.fixture
def page(browser: object, console_server: Cumulo) -> Iterator[object]:
    """A signed-in page on the console's server."""
    with _watched(browser, console_server, signed_in=True) as watched:
        yield watched


@pytest.fixture
def fresh_page(browser: object, console_server: Cumulo) -> Iterator[object]:
    """A page with no sign-in yet."""
    with _watched(browser, console_server, signed_in=False) as watched:
        yield watched


@pytest.fixture
def phone_page(browser: object, console_server: Cumulo) -> Iterator[object]:
    """A signed-in page on a phone-sized screen."""
    with _watched(browser, console_server, signed_in=True, mobile=True) as watched:
        yield watched


@pytest.fixture(scope="session")
def shot() -> Callable[[object, str], None]:
    """shot(page, "sql"): the page's picture in SCREENSHOTS_DIR, when that is set."""
    folder = os.environ.get("SCREENSHOTS_DIR")

    def take(page: object, name: str) -> None:
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(folder) / f"{name}.png"))  # type: ignore[attr-defined]

    return take
