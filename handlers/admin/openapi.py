"""``GET /openapi.json`` (public: it holds no data) and its page ``/api-docs``.

The document covers every operation the installed capabilities declared on the app (see
``handlers/openapi_registry.py``); it is built once the app starts, when every route is in, and
written out then too: serializing its ~286 KB for every request cost ~2.8 ms of the loop each,
so anyone, with no token, kept a core busy with ~350 requests a second (235 us each now:
``bench/anonymous_reads.py``). Its answer is those bytes, with an ``ETag`` a client
(``/api-docs``, a browser's cache) sends back to be answered ``304``.

The document is a function of the operations and the list limit alone, so a process keeps the
few it wrote (:func:`_written`): an app started again in the same process with the same routes
(a test suite starts thousands, ~21 ms each to build) reuses them; a route declared twice
still fails the first start that declares it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from aiohttp import web

from handlers.openapi_document import build_document
from handlers.openapi_registry import Operation, installed
from handlers.web_pages import add_page


class OpenApiRoutes:
    """``GET /openapi.json`` and its page."""

    def __init__(self, web_dir: Path, list_limit: int | None = None) -> None:
        self._web_dir = web_dir
        self._list_limit = list_limit
        self._body = b""
        self._etag = ""

    def register(self, app: web.Application) -> None:
        """Attach the routes to ``app``; the document is built at start-up."""
        app.router.add_get("/openapi.json", self.spec)
        add_page(app, "/api-docs", self._web_dir / "api-docs.html")
        app.on_startup.append(self._build)

    async def _build(self, app: web.Application) -> None:
        # At start-up, not here: capabilities installed after this one add their routes later.
        self._body, self._etag = _written(installed(app), self._list_limit)

    async def spec(self, request: web.Request) -> web.Response:
        """The document (built once: it depends on the code and settings only)."""
        headers = {"ETag": self._etag, "Cache-Control": "no-cache"}  # kept, asked again each use
        held = _tags(request.headers.get("If-None-Match", ""))
        if self._etag in held or "*" in held:
            return web.Response(status=304, headers=headers)
        return web.Response(body=self._body, content_type="application/json", charset="utf-8", headers=headers)


@functools.lru_cache(maxsize=8)
def _written(operations: tuple[Operation, ...], list_limit: int | None) -> tuple[bytes, str]:
    """The document of ``operations`` as sent, and its entity tag (operations compare by value)."""
    body = json.dumps(build_document(operations, list_limit=list_limit)).encode()
    return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'


def _tags(if_none_match: str) -> set[str]:
    """The entity tags an ``If-None-Match`` names (weak ones as their strong form; ``*``: any)."""
    return {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
