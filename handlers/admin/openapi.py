"""``GET /openapi.json`` (public: it holds no data) and its page ``/api-docs``.

The document covers every operation the installed capabilities declared on the app (see
``handlers/openapi_registry.py``); it is built once the app starts, when every route is in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from handlers.openapi_document import build_document
from handlers.openapi_registry import installed
from handlers.web_pages import add_page


class OpenApiRoutes:
    """``GET /openapi.json`` and its page."""

    def __init__(self, web_dir: Path, list_limit: int | None = None) -> None:
        self._web_dir = web_dir
        self._list_limit = list_limit
        self._spec: dict[str, Any] = {}

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``; the document is built at start-up."""
        app.router.add_get("/openapi.json", self.spec)
        add_page(app, "/api-docs", self._web_dir / "api-docs.html")
        app.on_startup.append(self._build)

    async def _build(self, app: web.Application) -> None:
        # At start-up, not here: capabilities installed after this one add their routes later.
        self._spec = build_document(installed(app), list_limit=self._list_limit)

    async def spec(self, request: web.Request) -> web.Response:
        """The document (built once: it depends on the code and settings only)."""
        return web.json_response(self._spec)
