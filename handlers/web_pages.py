"""The browser pages: static files from web/, served with strict security headers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

# Pages load only their own scripts and talk only to this server.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class WebPages:
    """Landing page, voice-session page and the static assets they use."""

    def __init__(self, web_dir: Path) -> None:
        self._dir = web_dir

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``."""
        app.router.add_get("/", self._page("index.html"))
        app.router.add_get("/session", self._page("session.html"))
        app.router.add_get(r"/session/{session_id}", self._page("session.html"))
        app.router.add_get("/tg_auth", self._page("tg_auth.html"))
        app.router.add_static("/static/", self._dir, follow_symlinks=False)
        app.on_response_prepare.append(self._headers)

    def _page(self, name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        path = self._dir / name

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.FileResponse(path)

        return handler

    @staticmethod
    async def _headers(request: web.Request, response: web.StreamResponse) -> None:
        if response.status == 101:
            return  # a WebSocket upgrade: nothing is rendered, and these would live per connection
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if request.path.startswith("/static/"):
            # Revalidate on every load so a deploy never pairs a new page with an old script.
            response.headers.setdefault("Cache-Control", "no-cache")
        if request.path in ("/", "/tg_auth") or request.path.startswith("/session"):
            response.headers.setdefault("Content-Security-Policy", CSP)
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Cache-Control", "no-store")
