"""The browser pages: static files from web/, every HTML response with strict security headers.

A capability adds its pages with :func:`add_page`; every response whose content type is HTML
gets the same CSP, framing and caching headers, whatever route served it, so a page reached
under ``/static/`` is as protected as under its own path. Pages, scripts and stylesheets go out
gzipped to a client that takes it (``handlers.content_coding``): a phone on a slow network
waits for every byte.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from handlers.compressed_files import CompressedFiles
from handlers.content_coding import COMPRESSED_FILES_KEY, file_answer, gzip_answer, static_coding
from handlers.openapi_registry import HTML, Auth, Operation, document

# Pages load only their own scripts and talk only to this server.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob: data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)

PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(path: Path) -> PageHandler:
    """A route handler serving one HTML file, gzipped when the client takes it."""
    resolved = path.resolve()

    async def handler(request: web.Request) -> web.StreamResponse:
        return await gzip_answer(request, resolved) or file_answer(path)

    return handler


def add_page(app: web.Application, route: str, path: Path) -> None:
    """Serve the HTML file ``path`` at ``route`` (an aiohttp route pattern), documented as a page."""
    app.router.add_get(route, page(path))
    # A page's data comes over the documented API and Socket.IO: its id is not checked here.
    summary = f"The page {path.name} (HTML; the session id, if any, is read by the page)"
    document(app, (Operation("get", route, summary, tag="pages", auth=Auth.NONE, ok_types=(HTML,)),))


class WebPages:
    """Landing page, voice-session page and the static assets every page uses."""

    def __init__(self, web_dir: Path) -> None:
        self._dir = web_dir

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        add_page(app, "/", self._dir / "index.html")
        add_page(app, "/session", self._dir / "session.html")
        add_page(app, r"/session/{session_id}", self._dir / "session.html")
        add_page(app, "/tg_auth", self._dir / "tg_auth.html")
        app[COMPRESSED_FILES_KEY] = CompressedFiles()
        static = app.router.add_static("/static/", self._dir, follow_symlinks=False)
        # Innermost but for the app's own (server.app): the gzip copy is an answer of the route.
        app.middlewares.append(static_coding(static, self._dir))
        app.on_response_prepare.append(self._headers)

    @staticmethod
    async def _headers(request: web.Request, response: web.StreamResponse) -> None:
        if response.status == 101:
            return  # a WebSocket upgrade: nothing is rendered, and these would live per connection
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if response.content_type == "text/html":
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Cache-Control", "no-store")
        elif request.path.startswith("/static/"):
            # Revalidate on every load so a deploy never pairs a new page with an old script.
            response.headers.setdefault("Cache-Control", "no-cache")
        elif response.content_type == "application/json":
            # An answer is someone's data as it stands now: never stored, so never answered from
            # a cache. A history navigation (Back to /streams after starting a stream) may serve
            # a page's reads from the browser's cache: the list said 'Not started' for a live one.
            response.headers.setdefault("Cache-Control", "no-store")
