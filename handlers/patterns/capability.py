"""Installs pattern sessions on a server: the kind, the live events, the API and the pages."""

from __future__ import annotations

from aiohttp import web

from handlers.context import Services
from handlers.openapi_registry import document
from handlers.patterns.api_edges import api_edges
from handlers.patterns.config import PatternConfig
from handlers.patterns.events import PatternEvents
from handlers.patterns.http import PatternRoutes
from handlers.patterns.kind import PatternKind
from handlers.patterns.operations import OPERATIONS
from handlers.socket_router import SocketRouter
from handlers.web_pages import add_page
from storage.patterns.repository import PatternSessions


def install(services: Services, router: SocketRouter, app: web.Application, *, config: PatternConfig) -> None:
    """Register everything pattern sessions serve, within ``config``'s limits."""
    patterns = PatternSessions(services.store)
    services.kinds.register(PatternKind(patterns))
    PatternEvents(services, patterns, config).register(router)
    PatternRoutes(services, patterns, config).register(app)
    document(app, OPERATIONS)
    app.middlewares.append(api_edges)
    page = services.web_dir / "pattern.html"
    add_page(app, "/patterns", page)
    add_page(app, "/s/{session_id}", page)
    add_page(app, "/s/{session_id}/remix", page)  # seed 004's "remix this" link; the page remixes
