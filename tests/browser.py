"""Browser fixtures: Playwright driving Debian's chromium, one browser per run, a context per test.

Two builds of Debian's chromium 156 (one source: the same Blink, V8 and network stack):
- ``browser``: ``chromium-headless-shell`` (Debian package ``chromium-headless-shell``), the
  headless build without the desktop browser's windows, tab strip and profile services. Most
  page tests run here: a new page costs ~85 ms of CPU against ~350 ms in ``chromium --headless``
  (measured with ``tests/browser.py`` args, about:blank, Debian 12), and browser tests are about
  half of the suite's time. Without it the fixture falls back to ``chromium``.
- ``full_browser``: ``chromium``, the browser people run: the journeys (``tests/journeys.py``)
  and the phone's touch tests use it, so the whole product is still tried in the real thing.

Import the fixtures into a test module (``from tests.browser import browser, tab``). Without
chromium the tests are skipped, except on CI (``CI=true``), where a missing browser fails them.
``playwright install`` is never needed: the browsers are the system's.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_asyncio

try:
    from playwright.async_api import (
        Browser,
        ConsoleMessage,
        Dialog,
        Page,
        Route,
        WebSocketRoute,
        async_playwright,
        expect,
    )
except ImportError:  # the dev extra is not installed
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("browser tests need the playwright package (pip install -e '.[dev]')", allow_module_level=True)

from tests.helpers import ServerUnderTest

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # A synthetic microphone (a beep) granted without a prompt: the FAB records in tests.
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
LAUNCH_TIMEOUT_MS = 30_000
ACTION_TIMEOUT_MS = 10_000
TOKEN_KEY = "sessionhub.token"  # web/js/client.js

expect.set_options(timeout=ACTION_TIMEOUT_MS)


def headless_shell_path() -> str:
    """Debian's ``chromium-headless-shell``, or its ``chromium`` when the shell is not installed
    (the same engine, four times the CPU per page). CI installs the shell (scripts/bootstrap.sh)."""
    path = shutil.which("chromium-headless-shell")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs the page tests on chromium-headless-shell (apt-get install chromium-headless-shell)")
        return chromium_path()
    return path


def chromium_path() -> str:
    """Debian's chromium, or skip (fail on CI) naming what is missing."""
    path = shutil.which("chromium")
    if path is None:
        reason = "browser tests need Debian's chromium on PATH (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@dataclass
class Tab:
    """One page in its own browser context, and what it reported while the test ran."""

    page: Page
    base_url: str
    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _on_console(self, message: ConsoleMessage) -> None:
        line = f"{message.type}: {message.text}"
        self.console.append(line)
        if "Content Security Policy" in message.text:
            self.errors.append(line)

    async def use_token(
        self, token: str, *, guest: bool = False, ttl_s: int = 3600, obtained_s_ago: int | None = None
    ) -> None:
        """Pre-set the stored token, as a sign-in would leave it, before the first page loads."""
        fields: dict[str, object] = {"token": token, "expires_at": int(time.time()) + ttl_s, "guest": guest}
        if obtained_s_ago is not None:
            fields["obtained_at"] = int(time.time()) - obtained_s_ago
        record = json.dumps(fields)
        # Only when absent: a token the page renews itself must survive the next navigation.
        await self.page.add_init_script(
            f"if (location.origin === {json.dumps(self.base_url)} && localStorage.getItem({json.dumps(TOKEN_KEY)}) === null)"
            f" localStorage.setItem({json.dumps(TOKEN_KEY)}, {json.dumps(record)});"
        )

    async def open(self, path: str) -> Page:
        """Load ``path`` of the server under test."""
        await self.page.goto(self.base_url + path, wait_until="domcontentloaded")
        return self.page

    async def stored_token(self) -> dict[str, object] | None:
        """The token record the page keeps in localStorage."""
        raw = await self.page.evaluate(f"localStorage.getItem({json.dumps(TOKEN_KEY)})")
        return json.loads(raw) if raw else None


@dataclass
class LostAnswers:
    """What :func:`lose_answers` saw: each request's ``Idempotency-Key``, as it came, and the
    JSON answers the page never heard."""

    keys: list[str | None] = field(default_factory=list)
    lost: list[Any] = field(default_factory=list)


# What a create says when no answer came at all (web/js/create_keys.js).
UNCONFIRMED_CREATE = (
    "No answer from the server, so it may have been made: press again, which is safe (nothing is made twice)."
)


async def lose_answers(page: Page, url: str, count: int = 1, *, method: str = "POST") -> LostAnswers:
    """Route ``url`` (a glob) so that the server runs the first ``count`` requests of ``method``
    but their answers never reach the page (a reset); later ones, and other methods, pass."""
    seen = LostAnswers()

    async def lose(route: Route) -> None:
        if route.request.method != method:
            await route.continue_()
            return
        seen.keys.append(await route.request.header_value("Idempotency-Key"))
        if len(seen.keys) <= count:
            reached = await route.fetch()  # the server runs it; the page never hears of it
            body = await reached.text()
            seen.lost.append(
                json.loads(body)
                if body and reached.headers.get("content-type", "").startswith("application/json")
                else body
            )
            await route.abort("connectionreset")
        else:
            await route.continue_()

    await page.route(url, lose)
    return seen


async def lose_first_answer(page: Page, url: str) -> list[str | None]:
    """Route ``url`` (a glob) so that the server runs the first request but its answer never
    reaches the page (a reset); later ones pass. Returns the ``Idempotency-Key`` of each request
    as it comes, for the test to compare."""
    return (await lose_answers(page, url)).keys


# Every text a page's live regions (role status or alert, aria-live) were given, by region id:
# one entry per change of a region in a mutation batch, so text written again counts again (a
# screen reader may say it again). Installed before the page loads (`listen_to_live_regions`).
_LIVE_TEXTS = """
window.__liveTexts = {};
new MutationObserver((records) => {
  const changed = new Set();
  for (const record of records) {
    const node = record.target.nodeType === 1 ? record.target : record.target.parentElement;
    const region = node?.closest?.("[role=status], [role=alert], [aria-live]");
    if (region?.id && !changed.has(region)) {
      changed.add(region);
      (window.__liveTexts[region.id] ??= []).push(region.textContent);
    }
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
"""


async def listen_to_live_regions(page: Page) -> None:
    """Log what the page's live regions are given from the next load on (see ``live_texts``)."""
    await page.add_init_script(_LIVE_TEXTS)


async def live_texts(page: Page, region_id: str) -> list[str]:
    """The texts live region ``region_id`` was given, in order (its changes to "" left out)."""
    texts: list[str] = await page.evaluate("(id) => window.__liveTexts[id] ?? []", region_id)
    return [text for text in texts if text]


def accept_dialogs(page: Page) -> list[str]:
    """Accept every dialog ``page`` opens from now on (a guest's sign-out, a session's Delete ask
    first), noting each one's message."""
    said: list[str] = []

    async def accept(dialog: Dialog) -> None:
        said.append(dialog.message)
        await dialog.accept()

    page.on("dialog", accept)
    return said


class LeaveQuestions:
    """The questions a page asks as it is left (``beforeunload``), each answered "stay on the
    page": ``asked`` once one was, ``types`` of every one so far."""

    def __init__(self, page: Page) -> None:
        self.types: list[str] = []
        self.asked = asyncio.Event()
        page.on("dialog", self._stay)

    async def _stay(self, dialog: Dialog) -> None:
        self.types.append(dialog.type)
        await dialog.dismiss()  # "stay on the page"
        self.asked.set()


class SocketGate:
    """Routes a page's Socket.IO WebSockets through the test, which can cut them and hold back
    the reconnection until it has changed something the page must then catch up on."""

    def __init__(self) -> None:
        self.connected: list[tuple[WebSocketRoute, WebSocketRoute]] = []  # (page side, server side)
        self.held: list[WebSocketRoute] = []
        self.holding = False
        self.joined = 0  # Socket.IO connections the server let in through the gate, so far
        # While muted, what pages send is kept here, in order, and reaches the server on unmute:
        # a network that stalls without a close, which a page cannot tell from a slow server.
        self.muted: list[tuple[WebSocketRoute, str | bytes]] | None = None
        self.sent: list[str] = []  # every text frame the pages sent, in order

    async def install(self, page: Page) -> None:
        """Route the page's connections to ``/socket.io/`` (before the page loads)."""
        await page.route_web_socket(re.compile(r"/socket\.io/"), self._route)

    def _route(self, ws: WebSocketRoute) -> None:
        # Never block here: Playwright runs route handlers on its dispatch path.
        if self.holding:
            self.held.append(ws)
        else:
            self._connect(ws)

    def _connect(self, ws: WebSocketRoute) -> None:
        server_side = ws.connect_to_server()
        ws.on_message(lambda message: self._from_page(server_side, message))
        server_side.on_message(lambda message: self._from_server(ws, message))
        self.connected.append((ws, server_side))

    def _from_server(self, page_side: WebSocketRoute, message: str | bytes) -> None:
        if isinstance(message, str) and message.startswith("40"):  # Socket.IO's CONNECT answered
            self.joined += 1
        page_side.send(message)

    def _from_page(self, server_side: WebSocketRoute, message: str | bytes) -> None:
        if isinstance(message, str):
            self.sent.append(message)
        if self.muted is None:
            server_side.send(message)
        else:
            self.muted.append((server_side, message))

    def mute(self) -> None:
        """Keep back what pages send from now on (they see no close, no error)."""
        self.muted = [] if self.muted is None else self.muted

    async def until_kept(self, event: str, count: int = 1) -> None:
        """Wait (bounded) until ``count`` sends of ``event`` are kept back while muted: the page
        has sent them, so their calls' timers run from now (a test may then move the clock)."""
        for _ in range(600):
            kept = [m for _, m in self.muted or [] if isinstance(m, str) and f'"{event}"' in m]
            if len(kept) >= count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"fewer than {count} sends of {event} were kept back")

    def unmute(self) -> None:
        """Send what was kept back, in order, and whatever follows as it comes."""
        kept, self.muted = self.muted or [], None
        for server_side, message in kept:
            server_side.send(message)

    async def cut(self) -> None:
        """Close every open connection on both sides, holding back the ones that follow."""
        self.holding = True
        cutting, self.connected = self.connected, []
        for page_side, server_side in cutting:
            await server_side.close(code=1001, reason="cut by the test")
            await page_side.close(code=1001, reason="cut by the test")

    def release(self) -> None:
        """Let held and later connections through to the server."""
        self.holding = False
        held, self.held = self.held, []
        for ws in held:
            self._connect(ws)


@asynccontextmanager
async def _launched(path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=path, headless=True, args=CHROMIUM_ARGS, timeout=LAUNCH_TIMEOUT_MS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Debian's headless chromium shell for the whole run (the page tests)."""
    async with _launched(headless_shell_path()) as launched:
        yield launched


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def full_browser() -> AsyncIterator[Browser]:
    """Debian's chromium, headless, for the whole run (the journeys: the browser people run)."""
    async with _launched(chromium_path()) as launched:
        yield launched


async def new_tab(
    browser: Browser, server: ServerUnderTest, *, bypass_csp: bool = False, timezone_id: str | None = None
) -> Tab:
    """A page in a fresh context (empty localStorage) pointed at ``server``, in the machine's time
    zone unless ``timezone_id`` names one."""
    context = await browser.new_context(bypass_csp=bypass_csp, timezone_id=timezone_id)
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    return Tab(page=await context.new_page(), base_url=server.url)


@pytest_asyncio.fixture
async def tab(browser: Browser, server: ServerUnderTest) -> AsyncIterator[Tab]:
    """A fresh page; after the test, no uncaught error or CSP violation may have happened."""
    opened = await new_tab(browser, server)
    yield opened
    await opened.page.context.close()
    assert not opened.errors, "the page reported errors:\n" + "\n".join(opened.errors + opened.console)
